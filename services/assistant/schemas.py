"""Request and response bodies of the assistant service."""

import uuid
from datetime import datetime
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from services.assistant.models import QueryStatus, Rating
from services.assistant.retrieval import SourceName
from shared.deps import Timestamp
from shared.passages import PassageKind


def _not_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be empty or only white space")
    return value


class QueryIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    question: Annotated[str, Field(min_length=1, max_length=10_000), AfterValidator(_not_blank)]
    conversation_id: uuid.UUID | None = None
    sources: Annotated[list[SourceName], Field(min_length=1, max_length=2)] = ["documents", "mail"]
    document_ids: Annotated[list[uuid.UUID], Field(max_length=100)] | None = None
    account_ids: Annotated[list[uuid.UUID], Field(max_length=100)] | None = None
    after: Timestamp | None = None
    before: Timestamp | None = None
    k: Annotated[int, Field(ge=1, le=20)] | None = Field(
        None, description="most passages handed to the model"
    )


class SourceOut(BaseModel):
    """A passage handed to the model, as it was then; ``available`` says whether its document or
    email still exists (null when that could not be checked)."""

    model_config = ConfigDict(from_attributes=True)

    n: int
    kind: PassageKind
    chunk_id: uuid.UUID | None = Field(None, description="the passage's id in its service's index")
    document_id: uuid.UUID | None = None
    title: str | None = None
    page: int | None = None
    email_id: uuid.UUID | None = None
    attachment_id: uuid.UUID | None = None
    account_id: uuid.UUID | None = None
    subject: str | None = None
    sender: str | None = None
    sent_at: datetime | None = None
    quote: str = Field(description="an exact substring of the passage")
    text: str = Field(description="the whole passage")
    score: float
    available: bool | None = True


class Timings(BaseModel):
    retrieval_ms: float | None = None
    first_token_ms: float | None = None
    total_ms: float | None = None


class FeedbackOut(BaseModel):
    rating: Rating
    comment: str | None = None
    created_at: datetime


class QueryOut(BaseModel):
    id: uuid.UUID
    conversation_id: uuid.UUID
    question: str
    standalone_question: str
    answer: str
    status: QueryStatus
    citations: list[SourceOut] = Field(description="the sources the answer cites, in order of first use")
    sources: list[SourceOut] = Field(description="every passage handed to the model, numbered from 1")
    unsupported_sentences: int = Field(description="sentences of the answer that no source supports")
    warnings: list[str]
    model: str | None
    timings: Timings
    created_at: datetime
    feedback: FeedbackOut | None = None
    document_id: uuid.UUID | None = Field(
        None, description="the document the question was asked about (history imported from the legacy app)"
    )


class QueryPage(BaseModel):
    items: list[QueryOut]
    total: int


class FeedbackIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    rating: Rating
    comment: Annotated[str, Field(max_length=4000)] | None = None


class ConversationOut(BaseModel):
    id: uuid.UUID
    title: str
    created_at: datetime
    updated_at: datetime
    query_count: int


class ConversationPage(BaseModel):
    items: list[ConversationOut]
    total: int


class ConversationDetail(ConversationOut):
    queries: list[QueryOut]


class ConversationUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    title: Annotated[str, Field(min_length=1, max_length=200), AfterValidator(_not_blank)]
