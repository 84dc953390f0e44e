"""Fixtures for the local cloud (filled by the local-cloud work)."""
