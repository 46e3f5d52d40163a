"""Tables of the ``assistant`` schema: conversations, the queries asked in them (with their
answer and feedback) and the sources each answer was written from. Every row carries
``owner_id`` and row-level security hides other users' rows (migration 0002)."""

import uuid
from datetime import datetime
from enum import StrEnum

from sqlalchemy import Column, MetaData
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Field, SQLModel

from shared.models import timestamp, uuid_pk

SCHEMA = "assistant"
metadata = MetaData(schema=SCHEMA)


class AssistantModel(SQLModel):
    """Base of this schema's tables: they all land in ``metadata`` (schema ``assistant``)."""

    metadata = metadata


class QueryStatus(StrEnum):
    COMPLETE = "complete"
    # Stopped before the end: the model failed after it had started, the client left, or the
    # process died mid-answer (a query is stored as incomplete until its answer is finished).
    INCOMPLETE = "incomplete"
    NO_SOURCES = "no_sources"  # nothing relevant was found; no model was asked
    FAILED = "failed"  # no answer at all (e.g. every source service was unavailable)


class Rating(StrEnum):
    UP = "up"
    DOWN = "down"


class Conversation(AssistantModel, table=True):
    __tablename__ = "conversations"

    id: uuid.UUID = uuid_pk()
    owner_id: uuid.UUID = Field(index=True)
    title: str = Field(max_length=200)
    created_at: datetime = timestamp()
    updated_at: datetime = timestamp()


class Query(AssistantModel, table=True):
    __tablename__ = "queries"

    id: uuid.UUID = uuid_pk()
    owner_id: uuid.UUID = Field(index=True)
    conversation_id: uuid.UUID = Field(foreign_key="conversations.id", ondelete="CASCADE")
    question: str
    standalone_question: str
    answer: str = ""
    status: str = Field(default=QueryStatus.INCOMPLETE, max_length=20)
    unsupported_sentences: int = 0
    warnings: list[str] = Field(default_factory=list, sa_column=Column(JSONB, nullable=False))
    model: str | None = Field(default=None, max_length=200)
    retrieval_ms: float | None = None
    first_token_ms: float | None = None
    total_ms: float | None = None
    feedback_rating: str | None = Field(default=None, max_length=10)
    feedback_comment: str | None = None
    feedback_at: datetime | None = timestamp(nullable=True, default_now=False)
    # The document the question was asked about (history imported from the legacy app).
    document_id: uuid.UUID | None = None
    created_at: datetime = timestamp()


class Source(AssistantModel, table=True):
    """A passage handed to the model for one query, numbered ``n`` from 1, frozen as it was:
    its text and title stay readable after the document or email is deleted."""

    __tablename__ = "sources"

    id: uuid.UUID = uuid_pk()
    owner_id: uuid.UUID = Field(index=True)
    query_id: uuid.UUID = Field(foreign_key="queries.id", ondelete="CASCADE")
    n: int
    kind: str = Field(max_length=20)
    chunk_id: uuid.UUID
    document_id: uuid.UUID | None = None
    email_id: uuid.UUID | None = None
    attachment_id: uuid.UUID | None = None
    account_id: uuid.UUID | None = None
    title: str | None = None
    subject: str | None = None
    sender: str | None = None
    sent_at: datetime | None = timestamp(nullable=True, default_now=False)
    page: int | None = None
    start: int | None = None
    end: int | None = None
    text: str
    quote: str
    score: float
    # Position among the answer's citations (1 = cited first); None: handed over, never cited.
    cited: int | None = None
