"""Tables of the ``documents`` schema. Every row carries ``owner_id`` and row-level security
hides other users' rows from the service role (see migration 0002)."""

import uuid
from datetime import datetime
from enum import StrEnum

from sqlalchemy import BigInteger, Column, MetaData
from sqlmodel import Field, SQLModel

from shared.models import timestamp, uuid_pk
from shared.text.chunking import Category

__all__ = ["Category", "Document", "Status"]

SCHEMA = "documents"
metadata = MetaData(schema=SCHEMA)


class DocumentsModel(SQLModel):
    """Base of this schema's tables: they all land in ``metadata`` (schema ``documents``)."""

    metadata = metadata


class Status(StrEnum):
    QUEUED = "queued"
    PROCESSING = "processing"
    READY = "ready"
    FAILED = "failed"


class Document(DocumentsModel, table=True):
    __tablename__ = "documents"

    id: uuid.UUID = uuid_pk()
    owner_id: uuid.UUID = Field(index=True)
    title: str = Field(max_length=300)
    description: str | None = Field(default=None, max_length=4000)
    filename: str = Field(max_length=255)  # the client's name, for display only; disk uses the id
    mime_type: str = Field(max_length=120)
    size: int = Field(sa_column=Column(BigInteger, nullable=False))
    sha256: str | None = Field(default=None, max_length=64)  # None: the file is missing
    category: str | None = Field(default=None, max_length=20)
    status: str = Field(default=Status.QUEUED, max_length=20)
    progress: float = 0.0
    chunk_count: int = 0
    page_count: int | None = None
    error: str | None = None
    attempts: int = 0  # ingestion starts since the last upload/re-index; capped by settings
    created_at: datetime = timestamp()
    updated_at: datetime = timestamp()
    # Set by DELETE: hidden from every query at once; a job then removes vectors, file and row.
    deleted_at: datetime | None = timestamp(nullable=True, default_now=False)
