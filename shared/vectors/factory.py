"""Pick the vector back end from settings: Weaviate when a URL is configured, else embedded LanceDB."""

from pathlib import Path
from typing import Literal

from pydantic import Field

from shared.embeddings import Embedder, EmbeddingSettings
from shared.vectors.base import VectorStore


class VectorSettings(EmbeddingSettings):
    """Settings of a service that embeds and stores vectors (documents, mail). The Weaviate
    pair is named as compose and the vector-store contract tests name it (no ``PAI_``)."""

    # Services ask the system's embeddings process (one model copy for every process);
    # PAI_EMBEDDING_BACKEND=local loads the model in-process instead, openai uses any API.
    embedding_backend: Literal["local", "server", "openai"] = "server"
    # Files of the service under <data_dir>/..., the embedded LanceDB store in <data_dir>/vectors.
    data_dir: Path = Path("data")
    weaviate_url: str | None = Field(None, validation_alias="WEAVIATE_URL")
    weaviate_api_key: str | None = Field(None, validation_alias="WEAVIATE_API_KEY")


def open_vector_store(settings: VectorSettings, embedder: Embedder) -> VectorStore:
    """The store for ``embedder``'s vectors, as the settings choose it."""
    return create_vector_store(
        data_dir=settings.data_dir,
        model=embedder.model_name,
        dimension=embedder.dimension,
        weaviate_url=settings.weaviate_url,
        weaviate_api_key=settings.weaviate_api_key,
    )


def create_vector_store(
    *,
    data_dir: Path,
    model: str,
    dimension: int,
    weaviate_url: str | None = None,
    weaviate_api_key: str | None = None,
) -> VectorStore:
    """Weaviate at ``weaviate_url`` if set, else LanceDB under ``data_dir / "vectors"``.

    Back ends are imported on demand so a process only loads the client it uses.
    """
    if weaviate_url:
        from shared.vectors.weaviate_store import WeaviateVectorStore

        return WeaviateVectorStore(weaviate_url, api_key=weaviate_api_key, model=model, dimension=dimension)
    from shared.vectors.lancedb_store import LanceDBVectorStore

    return LanceDBVectorStore(Path(data_dir) / "vectors", model=model, dimension=dimension)
