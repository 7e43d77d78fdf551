"""Chat with your documents, offline: ingest, hybrid retrieval, cited answers from a local model."""

__version__ = "0.1.0"  # the same as pyproject.toml's version (tests/test_console.py checks)
