"""Chat with your documents, offline: ingest, hybrid retrieval, cited answers from a local model."""
