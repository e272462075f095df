"""Workflow-level tests: each workflow on a Worker of its own, with stub activities registered
under the contract's names, on the session's Temporal dev server."""
