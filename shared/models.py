"""Column helpers for SQLModel tables: UUID keys and timezone-aware UTC timestamps."""

import uuid
from datetime import UTC, datetime

from sqlalchemy import Column, DateTime
from sqlmodel import Field


def utcnow() -> datetime:
    return datetime.now(UTC)


def uuid_pk() -> uuid.UUID:
    return Field(default_factory=uuid.uuid4, primary_key=True)


def timestamp(*, nullable: bool = False, index: bool = False, default_now: bool = True):
    """A ``timestamptz`` column; Python-side default so values come back tz-aware at once."""
    return Field(
        default_factory=utcnow if default_now else None,
        sa_column=Column(DateTime(timezone=True), nullable=nullable, index=index),
    )
