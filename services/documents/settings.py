"""Settings of the documents service and its worker (all ``PAI_``-prefixed, except the
Weaviate pair of :class:`VectorSettings`)."""

from functools import lru_cache
from pathlib import Path

from pydantic import Field

from shared.config import service_database_url
from shared.text.chunking import ChunkSizes
from shared.text.isolation import ExtractionSettings
from shared.vectors import VectorSettings


class DocumentsSettings(VectorSettings, ExtractionSettings):
    documents_database_url: str | None = Field(None, validation_alias="PAI_DOCUMENTS_DATABASE_URL")

    # Uploads live in <data_dir>/uploads/<user>/<document>/ (data_dir: see VectorSettings).
    max_upload_bytes: int = 50 * 1024 * 1024

    # Chunk sizes in characters, per category.
    chunk_financial_chars: int = 400
    chunk_long_form_chars: int = 1500
    chunk_long_form_overlap_chars: int = 200
    chunk_generic_chars: int = 800

    # How often the worker enqueues every unfinished document again (seconds; divides a minute):
    # ARQ ignores a job id it still knows, so only jobs Redis lost come back, within one tick.
    recover_interval_seconds: int = 60
    # Longest one ingestion may run; a killed worker's job is retried after this (+10 s).
    ingest_timeout_seconds: int = 600
    # A document whose ingestion was started this often without finishing is marked failed.
    ingest_max_attempts: int = 3
    # A document that cuts into more chunks than this fails instead of flooding the store.
    max_chunks_per_document: int = 20_000
    # How often the worker compacts the embedded vector store.
    vector_optimize_minutes: int = 30

    @property
    def service_database_url(self) -> str:
        return service_database_url(self.database_url, "pai_documents", self.documents_database_url)

    @property
    def uploads_dir(self) -> Path:
        return self.data_dir / "uploads"

    @property
    def chunk_sizes(self) -> ChunkSizes:
        return ChunkSizes(
            financial=self.chunk_financial_chars,
            long_form=self.chunk_long_form_chars,
            long_form_overlap=self.chunk_long_form_overlap_chars,
            generic=self.chunk_generic_chars,
        )


@lru_cache
def get_settings() -> DocumentsSettings:
    return DocumentsSettings()
