"""Tables of the ``auth`` schema."""

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import Column, ForeignKey, MetaData
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.types import Uuid
from sqlmodel import Field, SQLModel

from shared.models import timestamp, uuid_pk

SCHEMA = "auth"
metadata = MetaData(schema=SCHEMA)


class AuthModel(SQLModel):
    """Base of this schema\'s tables: they all land in ``metadata`` (schema ``auth``)."""

    metadata = metadata


class User(AuthModel, table=True):
    __tablename__ = "users"

    id: uuid.UUID = uuid_pk()
    email: str = Field(max_length=320)  # stored lower-cased; unique index in the migration
    username: str = Field(max_length=50)  # unique case-insensitively (index on lower(username))
    password_hash: str
    is_admin: bool = False
    is_active: bool = True
    # Sign-in refused until an admin sets a new password (an imported well-known default one).
    password_reset_required: bool = False
    created_at: datetime = timestamp()
    updated_at: datetime = timestamp()


class RefreshToken(AuthModel, table=True):
    """One issued refresh token. Rotation spends it; a family is one login's chain of tokens."""

    __tablename__ = "refresh_tokens"

    id: uuid.UUID = uuid_pk()
    user_id: uuid.UUID = Field(
        sa_column=Column(Uuid, ForeignKey("auth.users.id", ondelete="CASCADE"), nullable=False, index=True)
    )
    family_id: uuid.UUID = Field(index=True)
    token_hash: str = Field(unique=True)  # sha256 of the random token; the token is never stored
    created_at: datetime = timestamp()
    expires_at: datetime = timestamp(default_now=False)
    used_at: datetime | None = timestamp(nullable=True, default_now=False)
    revoked_at: datetime | None = timestamp(nullable=True, default_now=False)


class AuditEntry(AuthModel, table=True):
    """An admin action. Kept after the users it names are deleted, so no foreign keys."""

    __tablename__ = "audit_log"

    id: uuid.UUID = uuid_pk()
    actor_id: uuid.UUID | None = None  # None: the operator's CLI
    action: str = Field(max_length=64)
    target_user_id: uuid.UUID | None = None
    details: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSONB, nullable=False))
    created_at: datetime = timestamp(index=True)


class PurgeRequest(AuthModel, table=True):
    """Outbox row for a deleted user's purge in another service; re-enqueued until done."""

    __tablename__ = "purge_requests"

    id: uuid.UUID = uuid_pk()
    user_id: uuid.UUID = Field(index=True)
    service: str = Field(max_length=32)
    created_at: datetime = timestamp()
    enqueued_at: datetime | None = timestamp(nullable=True, default_now=False)
    completed_at: datetime | None = timestamp(nullable=True, default_now=False)
