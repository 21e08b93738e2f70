"""Alembic migrations: one history for both stores."""
