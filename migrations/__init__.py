"""Alembic migrations: the only way the database schema comes to exist."""
