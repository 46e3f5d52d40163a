"""Settings of the embeddings process (``PAI_``-prefixed): the local model's, plus batching."""

from functools import lru_cache
from typing import Any

from pydantic import Field, model_validator

from shared.embeddings import EmbeddingSettings


class EmbeddingsSettings(EmbeddingSettings):
    """This process *is* the model, so its backend is always ``local``, whatever
    ``PAI_EMBEDDING_BACKEND`` tells the other processes."""

    # Most texts encoded in one forward pass (requests from every caller are merged up to it).
    embeddings_max_batch: int = Field(64, ge=1)
    # How long the first request of a pass waits for others to join it. 0: none (continuous
    # batching: what queued while the previous pass ran goes together; a lone query never waits).
    embeddings_batch_wait_ms: float = Field(0.0, ge=0)
    # Most texts one request may carry, and the longest text (characters).
    embeddings_max_inputs: int = Field(2048, ge=1)
    embeddings_max_chars: int = Field(100_000, ge=1)
    # After this long with nothing to encode, the passes' freed buffers go back to the OS
    # (~140 MiB resident on 2 cores; the next pass takes them again). 0 turns it off.
    embeddings_idle_release_seconds: float = Field(1.0, ge=0)

    @model_validator(mode="before")
    @classmethod
    def _always_local(cls, values: Any) -> Any:
        if isinstance(values, dict):
            values = {**values, "embedding_backend": "local", "embedding_base_url": None}
        return values


@lru_cache
def get_settings() -> EmbeddingsSettings:
    return EmbeddingsSettings()
