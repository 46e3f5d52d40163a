"""Request and response bodies of the documents service."""

import uuid
from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from services.documents.models import Category, Status


class DocumentOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    title: str
    description: str | None
    filename: str
    mime_type: str
    size: int
    sha256: str | None  # None: the file is missing (an imported document)
    category: Category | None
    status: Status
    progress: float
    chunk_count: int
    page_count: int | None
    error: str | None
    created_at: datetime
    updated_at: datetime


class DocumentPage(BaseModel):
    items: list[DocumentOut]
    total: int


class DocumentUpdate(BaseModel):
    title: Annotated[str, Field(min_length=1, max_length=300)] | None = None
    description: Annotated[str, Field(max_length=4000)] | None = None
