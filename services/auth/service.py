"""Auth logic: accounts, logins, refresh-token families, and the admin operations."""

import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from arq.connections import ArqRedis
from limits import RateLimitItemPerSecond
from sqlalchemy import func, or_, select, text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from services.auth.models import AuditEntry, PurgeRequest, RefreshToken, User
from services.auth.passwords import hash_password, verify_password
from services.auth.schemas import AdminUserCreate, AdminUserUpdate, RegisterRequest
from services.auth.settings import AuthSettings
from services.auth.tokens import AccessTokenIssuer, hash_refresh_token, new_refresh_token
from shared.auth import RevocationList
from shared.errors import ApiError
from shared.models import utcnow
from shared.ratelimit import RedisRateLimit
from shared.tasks import PURGE_SERVICES, enqueue_purge

BAD_CREDENTIALS = ApiError(401, "invalid_credentials", "Incorrect username or password")
BAD_REFRESH = ApiError(401, "invalid_refresh_token", "Refresh token is invalid or expired")
# Serialises admin-role changes so two admins can never demote each other at once.
ADMIN_LOCK_SQL = text("SELECT pg_advisory_xact_lock(hashtext('auth.admin_roles'))")


class LoginThrottle:
    """At most N failed logins per username and client IP in a moving window (Redis)."""

    def __init__(self, redis_url: str, max_failures: int, window_seconds: int) -> None:
        self._limit = RedisRateLimit(
            redis_url, RateLimitItemPerSecond(max_failures, window_seconds), exact=True
        )

    async def check(self, username: str, client_ip: str) -> None:
        key = ("login", username.lower(), client_ip)
        if not await self._limit.allows(*key):
            raise await self._limit.rejection(
                "too_many_attempts", "Too many failed logins; try again later", *key
            )

    async def record_failure(self, username: str, client_ip: str) -> None:
        await self._limit.hit("login", username.lower(), client_ip)

    async def reset(self, username: str, client_ip: str) -> None:
        await self._limit.clear("login", username.lower(), client_ip)


def normalize_email(email: str) -> str:
    return email.strip().lower()


async def user_by_login(session: AsyncSession, login: str) -> User | None:
    key = login.strip().lower()
    column = func.lower(User.email) if "@" in key else func.lower(User.username)
    return (await session.scalars(select(User).where(column == key))).first()


async def _ensure_unique(
    session: AsyncSession, *, email: str | None, username: str | None, exclude: uuid.UUID | None
) -> None:
    conditions = []
    if email is not None:
        conditions.append(func.lower(User.email) == normalize_email(email))
    if username is not None:
        conditions.append(func.lower(User.username) == username.lower())
    if not conditions:
        return
    query = select(User.id).where(or_(*conditions))
    if exclude is not None:
        query = query.where(User.id != exclude)
    if (await session.execute(query)).first():
        raise ApiError(409, "conflict", "That username or email is already taken")


async def _commit_unique(session: AsyncSession) -> None:
    """Commit, turning a lost race on a unique index into the same 409 as the pre-check."""
    try:
        await session.commit()
    except IntegrityError:
        await session.rollback()
        raise ApiError(409, "conflict", "That username or email is already taken") from None


async def create_user(
    session: AsyncSession, data: RegisterRequest, *, is_admin: bool = False, is_active: bool = True
) -> User:
    await _ensure_unique(session, email=data.email, username=data.username, exclude=None)
    user = User(
        email=normalize_email(data.email),
        username=data.username,
        password_hash=await hash_password(data.password),
        is_admin=is_admin,
        is_active=is_active,
    )
    session.add(user)
    await session.flush()
    return user


async def enqueue_pending_purges(
    session: AsyncSession, arq: ArqRedis, user_id: uuid.UUID | None = None
) -> int:
    """(Re-)enqueue unfinished purges from the outbox; ARQ job ids make this idempotent."""
    query = select(PurgeRequest).where(PurgeRequest.completed_at.is_(None))
    if user_id is not None:
        query = query.where(PurgeRequest.user_id == user_id)
    pending = (await session.scalars(query)).all()
    for request in pending:
        await enqueue_purge(arq, request.service, request.user_id)
        request.enqueued_at = utcnow()
    await session.commit()
    return len(pending)


async def mark_purge_finished(session: AsyncSession, user_id: uuid.UUID, service: str) -> None:
    await session.execute(
        update(PurgeRequest)
        .where(PurgeRequest.user_id == user_id, PurgeRequest.service == service)
        .values(completed_at=utcnow())
    )
    await session.commit()


@dataclass
class AuthService:
    """Holds the process-wide parts; methods take the request's session."""

    settings: AuthSettings
    issuer: AccessTokenIssuer
    revocations: RevocationList
    throttle: LoginThrottle
    arq: ArqRedis

    # ---- accounts -------------------------------------------------------------------
    async def register(self, session: AsyncSession, data: RegisterRequest) -> User:
        if not self.settings.registration_open:
            raise ApiError(403, "registration_closed", "Registration is closed")
        user = await create_user(session, data)
        await _commit_unique(session)
        return user

    async def get_active_user(self, session: AsyncSession, user_id: uuid.UUID) -> User:
        user = await session.get(User, user_id)
        if user is None or not user.is_active:
            raise ApiError(
                401,
                "unauthorized",
                "Account not found or disabled",
                headers={"WWW-Authenticate": "Bearer"},
            )
        return user

    async def update_profile(
        self, session: AsyncSession, user: User, *, email: str | None, username: str | None
    ) -> User:
        await _ensure_unique(session, email=email, username=username, exclude=user.id)
        if email is not None:
            user.email = normalize_email(email)
        if username is not None:
            user.username = username
        user.updated_at = utcnow()
        session.add(user)
        await _commit_unique(session)
        return user

    async def change_password(
        self, session: AsyncSession, user: User, current: str, new: str, keep_session: str | None
    ) -> None:
        ok, _ = await verify_password(user.password_hash, current)
        if not ok:
            raise ApiError(403, "invalid_credentials", "Current password is incorrect")
        user.password_hash = await hash_password(new)
        user.updated_at = utcnow()
        session.add(user)
        keep = uuid.UUID(keep_session) if keep_session else None
        await self._revoke_refresh_tokens(session, user.id, except_family=keep)
        await session.commit()

    # ---- sessions -------------------------------------------------------------------
    async def login(self, session: AsyncSession, login: str, password: str, client_ip: str) -> dict:
        await self.throttle.check(login, client_ip)
        user = await user_by_login(session, login)
        ok, needs_rehash = await verify_password(user.password_hash if user else None, password)
        if user is None or not ok:
            await self.throttle.record_failure(login, client_ip)
            raise BAD_CREDENTIALS
        if not user.is_active:
            raise ApiError(403, "account_disabled", "This account is disabled")
        await self.throttle.reset(login, client_ip)
        if needs_rehash:  # legacy bcrypt or outdated argon2 parameters
            user.password_hash = await hash_password(password)
            session.add(user)
        pair = await self._issue_pair(session, user, family_id=uuid.uuid4())
        await session.commit()
        return pair

    async def refresh(self, session: AsyncSession, refresh_token: str) -> dict:
        token_hash = hash_refresh_token(refresh_token)
        query = select(RefreshToken).where(RefreshToken.token_hash == token_hash).with_for_update()
        stored = (await session.scalars(query)).first()
        if stored is None or stored.revoked_at is not None:
            raise BAD_REFRESH
        if stored.used_at is not None:
            # A spent token came back: someone holds a copy. Kill the whole family.
            await self._revoke_family(session, stored.family_id)
            await session.commit()
            raise ApiError(
                401,
                "refresh_token_reused",
                "Refresh token was already used; all sessions from that login are revoked",
            )
        if stored.expires_at <= utcnow():
            raise BAD_REFRESH
        user = await session.get(User, stored.user_id)
        if user is None or not user.is_active:
            raise BAD_REFRESH
        stored.used_at = utcnow()
        session.add(stored)
        pair = await self._issue_pair(session, user, family_id=stored.family_id)
        await session.commit()
        return pair

    async def logout(self, session: AsyncSession, refresh_token: str) -> None:
        query = select(RefreshToken.family_id).where(
            RefreshToken.token_hash == hash_refresh_token(refresh_token)
        )
        family_id = await session.scalar(query)
        if family_id is not None:
            await self._revoke_family(session, family_id)
            await session.commit()

    async def _issue_pair(self, session: AsyncSession, user: User, family_id: uuid.UUID) -> dict:
        token, token_hash = new_refresh_token()
        session.add(
            RefreshToken(
                user_id=user.id,
                family_id=family_id,
                token_hash=token_hash,
                expires_at=utcnow() + timedelta(days=self.settings.refresh_token_ttl_days),
            )
        )
        access = self.issuer.issue(user.id, is_admin=user.is_admin, session_id=family_id)
        return {
            "access_token": access,
            "refresh_token": token,
            "token_type": "bearer",
            "expires_in": self.issuer.ttl_seconds,
        }

    async def _revoke_family(self, session: AsyncSession, family_id: uuid.UUID) -> None:
        await session.execute(
            update(RefreshToken)
            .where(RefreshToken.family_id == family_id, RefreshToken.revoked_at.is_(None))
            .values(revoked_at=utcnow())
        )

    async def _revoke_refresh_tokens(
        self, session: AsyncSession, user_id: uuid.UUID, except_family: uuid.UUID | None = None
    ) -> None:
        query = update(RefreshToken).where(RefreshToken.user_id == user_id, RefreshToken.revoked_at.is_(None))
        if except_family is not None:
            query = query.where(RefreshToken.family_id != except_family)
        await session.execute(query.values(revoked_at=utcnow()))

    # ---- admin ----------------------------------------------------------------------
    async def list_users(
        self, session: AsyncSession, *, limit: int, offset: int, q: str | None
    ) -> tuple[list[User], int]:
        query = select(User)
        if q:
            pattern = "%" + q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
            query = query.where(or_(User.username.ilike(pattern), User.email.ilike(pattern)))
        total = await session.scalar(select(func.count()).select_from(query.subquery()))
        page = query.order_by(User.created_at, User.id).limit(limit).offset(offset)
        users = (await session.scalars(page)).all()
        return list(users), int(total or 0)

    async def get_user(self, session: AsyncSession, user_id: uuid.UUID) -> User:
        user = await session.get(User, user_id)
        if user is None:
            raise ApiError(404, "not_found", "User not found")
        return user

    async def admin_create_user(
        self, session: AsyncSession, actor: uuid.UUID | None, data: AdminUserCreate
    ) -> User:
        user = await create_user(session, data, is_admin=data.is_admin, is_active=data.is_active)
        self._audit(
            session,
            actor,
            "user.create",
            user.id,
            {"username": user.username, "is_admin": user.is_admin},
        )
        await _commit_unique(session)
        return user

    async def admin_update_user(
        self,
        session: AsyncSession,
        actor: uuid.UUID | None,
        user_id: uuid.UUID,
        data: AdminUserUpdate,
    ) -> User:
        await session.execute(ADMIN_LOCK_SQL)
        user = await self.get_user(session, user_id)
        changes = data.model_dump(exclude_unset=True, exclude_none=True)
        loses_admin = (
            user.is_admin
            and user.is_active
            and (changes.get("is_admin") is False or changes.get("is_active") is False)
        )
        if loses_admin:
            await self._guard_last_admin(session, user.id)
        await _ensure_unique(session, email=data.email, username=data.username, exclude=user.id)
        for field, value in changes.items():
            setattr(user, field, normalize_email(value) if field == "email" else value)
        user.updated_at = utcnow()
        session.add(user)
        if changes.get("is_active") is False:
            await self._revoke_refresh_tokens(session, user.id)
            await self.revocations.revoke_user(user.id)
        self._audit(session, actor, "user.update", user.id, changes)
        await _commit_unique(session)
        return user

    async def admin_delete_user(
        self, session: AsyncSession, actor: uuid.UUID | None, user_id: uuid.UUID
    ) -> None:
        if actor == user_id:
            raise ApiError(409, "cannot_delete_self", "Admins cannot delete their own account")
        await session.execute(ADMIN_LOCK_SQL)
        user = await self.get_user(session, user_id)
        if user.is_admin and user.is_active:
            await self._guard_last_admin(session, user.id)
        await self.revocations.revoke_user(user.id)
        self._audit(session, actor, "user.delete", user.id, {"username": user.username})
        for service in PURGE_SERVICES:
            session.add(PurgeRequest(user_id=user.id, service=service))
        await session.delete(user)
        await session.commit()
        await enqueue_pending_purges(session, self.arq, user_id=user.id)

    async def list_audit(
        self, session: AsyncSession, *, limit: int, offset: int
    ) -> tuple[list[AuditEntry], int]:
        total = await session.scalar(select(func.count()).select_from(AuditEntry))
        query = select(AuditEntry).order_by(AuditEntry.created_at.desc()).limit(limit).offset(offset)
        entries = (await session.scalars(query)).all()
        return list(entries), int(total or 0)

    async def _guard_last_admin(self, session: AsyncSession, user_id: uuid.UUID) -> None:
        others = (
            select(func.count()).select_from(User).where(User.is_admin, User.is_active, User.id != user_id)
        )
        if await session.scalar(others) == 0:
            raise ApiError(
                409, "last_admin", "The last active admin cannot be demoted, deactivated or deleted"
            )

    @staticmethod
    def _audit(
        session: AsyncSession,
        actor: uuid.UUID | None,
        action: str,
        target: uuid.UUID | None,
        details: dict[str, Any],
    ) -> None:
        session.add(
            AuditEntry(
                actor_id=actor,
                action=action,
                target_user_id=target,
                details=details,
            )
        )
