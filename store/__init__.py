"""The business record (sqlmodel): SQLite by default, PostgreSQL in production."""
