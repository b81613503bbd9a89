"""The data-access layer: every SQL statement ctxgraph runs lives in this package.

Functions take an `AsyncConnection` and return SQLAlchemy `Row` records whose
attribute names are the SQLModel field names, so the GraphQL types (derived
from the same models) read them directly. The caller owns the transaction:
reads use a short-lived connection each, a mutation one transaction.
"""
