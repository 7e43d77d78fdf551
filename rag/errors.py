"""The few exceptions a user can see; each message is one sentence saying what failed and what to do."""


class RagError(Exception):
    """Base class: the message is shown to the user as it is, without a traceback."""


class ConfigError(RagError):
    """A setting or a model path is wrong."""


class LoadError(RagError):
    """One document could not be read; the ingest reports it and goes on."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


class StoreError(RagError):
    """The index is missing, locked or damaged."""


class ModelError(RagError):
    """The GGUF model file is missing or cannot be loaded."""


class ModelServerError(ModelError):
    """The model server at RAG_LLM_URL is down, too slow, or answered an error."""
