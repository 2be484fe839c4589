"""apercu: an image ingestion service."""

__version__ = "0.1.0"
