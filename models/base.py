"""Shared SQLAlchemy metadata for every ctxgraph table.

A naming convention gives every constraint and index a deterministic name, so
Alembic migrations can refer to them and `alembic check` stays quiet
(the pattern of polarsource/polar `kit/db/models/base.py`).
"""

from sqlmodel import SQLModel

NAMING_CONVENTION: dict[str, str] = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# SQLModel keeps one MetaData for all table classes; give it the convention
# before any table is declared.
SQLModel.metadata.naming_convention = NAMING_CONVENTION

metadata = SQLModel.metadata

EMBEDDING_DIMENSIONS = 1536
"""Size of a message embedding (OpenAI text-embedding-3-small)."""
