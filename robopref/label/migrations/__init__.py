"""Alembic migrations of the label database (run by ``open_database``)."""
