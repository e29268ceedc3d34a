"""Alembic revisions, oldest first; each a frozen snapshot of its schema change."""
