"""Alembic migrations of the judge store."""
