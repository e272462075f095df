"""The HTTP API (FastAPI), v1."""
