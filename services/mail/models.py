"""Tables of the ``mail`` schema. Every row carries ``owner_id`` and row-level security hides
other users' rows from the service role (migration 0002). OAuth tokens and PKCE verifiers are
stored encrypted (:mod:`services.mail.crypto`)."""

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import BigInteger, Column, ForeignKey, MetaData, Uuid
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Field, SQLModel

from shared.models import timestamp, uuid_pk

SCHEMA = "mail"
metadata = MetaData(schema=SCHEMA)


class MailModel(SQLModel):
    """Base of this schema's tables: they all land in ``metadata`` (schema ``mail``)."""

    metadata = metadata


class AccountStatus(StrEnum):
    ACTIVE = "active"
    SYNCING = "syncing"
    NEEDS_REAUTH = "needs_reauth"
    ERROR = "error"


class SyncState(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class SyncMode(StrEnum):
    FULL = "full"
    INCREMENTAL = "incremental"


def _cascade(table: str) -> Any:
    return Field(
        sa_column=Column(Uuid, ForeignKey(f"{SCHEMA}.{table}.id", ondelete="CASCADE"), nullable=False)
    )


def _json(default: Any = None) -> Any:
    return Field(default_factory=lambda: default() if default else None, sa_column=Column(JSONB))


class EmailAccount(MailModel, table=True):
    __tablename__ = "email_accounts"

    id: uuid.UUID = uuid_pk()
    owner_id: uuid.UUID = Field(index=True)
    provider: str = Field(default="gmail", max_length=20)
    address: str = Field(max_length=320)
    status: str = Field(default=AccountStatus.ACTIVE, max_length=20)
    sync_enabled: bool = True
    last_sync_at: datetime | None = timestamp(nullable=True, default_now=False)
    last_error: str | None = None
    history_id: str | None = Field(default=None, max_length=40)  # Gmail's, after the last sync
    access_token: str  # encrypted
    refresh_token: str | None = None  # encrypted
    token_expires_at: datetime = timestamp()
    scopes: str = ""
    created_at: datetime = timestamp()
    updated_at: datetime = timestamp()


class OAuthSession(MailModel, table=True):
    """One consent attempt: the callback finds it by the hash of ``state`` and uses it once."""

    __tablename__ = "oauth_sessions"

    id: uuid.UUID = uuid_pk()
    owner_id: uuid.UUID
    state_hash: str = Field(max_length=64)
    code_verifier: str  # encrypted
    redirect_uri: str
    expires_at: datetime = timestamp()
    used_at: datetime | None = timestamp(nullable=True, default_now=False)
    created_at: datetime = timestamp()


class SyncRun(MailModel, table=True):
    __tablename__ = "sync_runs"

    id: uuid.UUID = uuid_pk()
    owner_id: uuid.UUID
    account_id: uuid.UUID = _cascade("email_accounts")
    state: str = Field(default=SyncState.QUEUED, max_length=20)
    mode: str | None = Field(default=None, max_length=20)
    processed: int = 0
    total: int | None = None
    error: str | None = None
    created_at: datetime = timestamp()
    updated_at: datetime = timestamp()
    started_at: datetime | None = timestamp(nullable=True, default_now=False)
    finished_at: datetime | None = timestamp(nullable=True, default_now=False)


class Email(MailModel, table=True):
    __tablename__ = "emails"

    id: uuid.UUID = uuid_pk()
    owner_id: uuid.UUID
    account_id: uuid.UUID = _cascade("email_accounts")
    gmail_id: str = Field(max_length=64)
    thread_id: str = Field(max_length=64)
    subject: str = ""
    sender_name: str | None = None
    sender_address: str | None = None
    to_addresses: list[dict] = _json(list)
    cc_addresses: list[dict] = _json(list)
    bcc_addresses: list[dict] = _json(list)
    sent_at: datetime | None = timestamp(nullable=True, default_now=False)
    labels: list[str] = _json(list)
    is_read: bool = False
    is_important: bool = False
    email_type: str = Field(default="generic", max_length=20)
    snippet: str = ""
    body_text: str = ""
    body_html: str | None = None  # kept when the source had it (imported legacy mail)
    size: int = Field(default=0, sa_column=Column(BigInteger, nullable=False))
    is_malformed: bool = False
    defects: list[str] = _json(list)
    indexed_at: datetime | None = timestamp(nullable=True, default_now=False)  # None: to embed
    created_at: datetime = timestamp()
    updated_at: datetime = timestamp()


class EmailAttachment(MailModel, table=True):
    """Metadata from the message; the bytes are kept on disk once downloaded (``stored``).
    ``part_index`` finds the part again in the raw message (:func:`parsing.attachment_bytes`);
    a negative one marks an attachment imported from the legacy app, which has no part index
    (its bytes exist only if the legacy app had downloaded them)."""

    __tablename__ = "email_attachments"

    id: uuid.UUID = uuid_pk()
    owner_id: uuid.UUID
    email_id: uuid.UUID = _cascade("emails")
    part_index: int
    filename: str
    mime_type: str = Field(max_length=255)
    size: int = Field(default=0, sa_column=Column(BigInteger, nullable=False))
    stored: bool = False
    index_note: str | None = None  # why it was not indexed, if it was not
    created_at: datetime = timestamp()
