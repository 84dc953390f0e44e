"""Fixtures for the tiny model and adapter (filled by the inference-server work)."""
