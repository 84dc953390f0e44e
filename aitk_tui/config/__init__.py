"""Pydantic models for the files aitk shares with AI Toolkit, and aitk's own settings."""
