"""Request and response bodies of the mail service. Tokens never appear in any of them."""

import uuid
from datetime import datetime

from pydantic import BaseModel, ConfigDict

from services.mail.classification import EmailType
from services.mail.models import AccountStatus, SyncMode, SyncState


class ConnectResponse(BaseModel):
    authorization_url: str


class AccountOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    provider: str
    address: str
    status: AccountStatus
    sync_enabled: bool
    last_sync_at: datetime | None
    message_count: int = 0
    last_error: str | None
    created_at: datetime


class AccountList(BaseModel):
    items: list[AccountOut]


class AccountUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    sync_enabled: bool


class SyncOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    account_id: uuid.UUID
    state: SyncState
    mode: SyncMode | None
    processed: int
    total: int | None
    started_at: datetime | None
    finished_at: datetime | None
    error: str | None


class AddressOut(BaseModel):
    name: str | None
    email: str


class AttachmentOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    filename: str
    mime_type: str
    size: int


class EmailSummary(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    account_id: uuid.UUID
    thread_id: str
    subject: str
    sender_name: str | None
    sender_address: str | None
    sent_at: datetime | None
    snippet: str
    labels: list[str]
    is_read: bool
    is_important: bool
    email_type: EmailType
    has_attachments: bool = False


class EmailPage(BaseModel):
    items: list[EmailSummary]
    total: int


class EmailOut(EmailSummary):
    to: list[AddressOut]
    cc: list[AddressOut]
    bcc: list[AddressOut]
    body_text: str
    size: int
    is_malformed: bool
    attachments: list[AttachmentOut]
