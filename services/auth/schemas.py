"""Request and response bodies of the auth service."""

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, EmailStr, Field, StringConstraints

Username = Annotated[str, StringConstraints(strip_whitespace=True, pattern=r"^[A-Za-z0-9_.-]{3,50}$")]
Password = Annotated[str, Field(min_length=8, max_length=1024)]


class RegisterRequest(BaseModel):
    email: EmailStr
    username: Username
    password: Password


class UserOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    email: str
    username: str
    is_admin: bool
    is_active: bool
    created_at: datetime


class AdminUserOut(UserOut):
    """A user as admins see them: whether sign-in waits for a new password (imported accounts
    that still had a well-known default one)."""

    password_reset_required: bool = False


class TokenPair(BaseModel):
    access_token: str
    # Absent when a browser signed in with X-Refresh-Cookie: 1 (then it is an HttpOnly cookie).
    refresh_token: str | None = None
    token_type: Literal["bearer"] = "bearer"  # noqa: S105 (the OAuth token type, not a secret)
    expires_in: int


class RefreshRequest(BaseModel):
    refresh_token: Annotated[str, Field(min_length=1, max_length=512)]


class UpdateMeRequest(BaseModel):
    email: EmailStr | None = None
    username: Username | None = None
    # Required to change the email: an access token alone must not take the account over.
    current_password: Annotated[str, Field(min_length=1, max_length=1024)] | None = None


class PasswordChangeRequest(BaseModel):
    current_password: Annotated[str, Field(min_length=1, max_length=1024)]
    new_password: Password


class AdminUserCreate(RegisterRequest):
    is_admin: bool = False
    is_active: bool = True


class AdminUserUpdate(BaseModel):
    email: EmailStr | None = None
    username: Username | None = None
    is_active: bool | None = None
    is_admin: bool | None = None
    # A new password set by the admin (and the end of ``password_reset_required``).
    password: Password | None = None


class UserPage(BaseModel):
    items: list[AdminUserOut]
    total: int


class AuditEntryOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    actor_id: uuid.UUID | None
    action: str
    target_user_id: uuid.UUID | None
    details: dict[str, Any]
    created_at: datetime


class AuditPage(BaseModel):
    items: list[AuditEntryOut]
    total: int
