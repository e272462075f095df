"""Configuration of every process: one pydantic-settings `Settings`, from `BACKORDERS_*`
environment variables (the table is in docs/configuration.md)."""
