"""The Azure back-end: no Textual imports. Long operations are async generators of events."""
