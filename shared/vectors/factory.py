"""Pick the vector back end from settings: Weaviate when a URL is configured, else embedded LanceDB."""

from pathlib import Path

from shared.vectors.base import VectorStore


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
