"""Auth logic: accounts, logins, refresh-token families, and the admin operations."""

import unicodedata
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from arq.connections import ArqRedis
from limits import RateLimitItemPerSecond, parse
from sqlalchemy import func, or_, select, text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.auth.models import AuditEntry, PurgeRequest, RefreshToken, User
from services.auth.passwords import hash_password, verify_password
from services.auth.schemas import AdminUserCreate, AdminUserUpdate, RegisterRequest
from services.auth.settings import AuthSettings
from services.auth.tokens import AccessTokenIssuer, hash_refresh_token, new_refresh_token
from shared.auth import RevocationList
from shared.db import Transaction, like_pattern, transaction
from shared.errors import Conflict, Forbidden, NotFound, Unauthenticated
from shared.models import utcnow
from shared.ratelimit import RedisRateLimit
from shared.registry import PURGE_SERVICES
from shared.tasks import enqueue_purge


def _bad_refresh() -> Unauthenticated:
    return Unauthenticated("Refresh token is invalid or expired", code="invalid_refresh_token")


# Serialises admin-role changes so two admins can never demote each other at once.
ADMIN_LOCK_SQL = text("SELECT pg_advisory_xact_lock(hashtext('auth.admin_roles'))")


class LoginThrottle:
    """Failed sign-ins per account, in a moving window (Redis, the ``limits`` package).

    Keyed on the account the login resolves to (its username and its email share one budget;
    case and spacing do not make new ones), or on the normalised login when it names nobody.
    A unit is taken *before* the password is checked (one atomic Redis script), so parallel
    guesses cannot all slip past a check made before any of them failed; a correct password
    gives it back by clearing the budget. While the budget is spent even the right password is
    refused. Every attempt also counts against the client IP's own, larger budget.
    """

    def __init__(self, redis_url: str, max_failures: int, window_seconds: int, ip_limit: str) -> None:
        # Every attempt also counts against the client IP's budget (``ip_limit``).
        self._account = RedisRateLimit(
            redis_url, RateLimitItemPerSecond(max_failures, window_seconds), exact=True
        )
        self._ip = RedisRateLimit(redis_url, parse(ip_limit))

    async def check_ip(self, client_ip: str) -> None:
        """Take one unit of the client IP's budget, or refuse (429): first, before any work."""
        if not await self._ip.hit("login-ip", client_ip):
            raise await self._ip.rejection(
                "too_many_attempts",
                "Too many sign-in attempts from this address; try again later",
                "login-ip",
                client_ip,
            )

    async def attempt(self, key: str) -> None:
        """Take one unit of the account's failure budget, or refuse (429)."""
        if not await self._account.hit("login", key):
            raise await self._account.rejection(
                "too_many_attempts",
                "Too many failed sign-ins for this account; try again later",
                "login",
                key,
            )

    async def succeeded(self, key: str) -> None:
        await self._account.clear("login", key)


def throttle_key(user: "User | None", login: str) -> str:
    return f"user:{user.id}" if user is not None else f"name:{normalize_login(login)}"


def normalize_login(login: str) -> str:
    """Compatibility-normalised (NFKC: full-width letters become plain ones) and case-folded:
    `` alice``, ``Alice`` and a full-width ``alice`` are one login."""
    return unicodedata.normalize("NFKC", login).strip().casefold()


def normalize_email(email: str) -> str:
    """The form an address is stored and compared in: NFKC (full-width and other compatibility
    characters become their plain forms) and case-folded, so look-alikes cannot register twice."""
    return normalize_login(email)


async def user_by_login(session: AsyncSession, login: str) -> User | None:
    key = normalize_login(login)
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
        raise Conflict("That username or email is already taken")


async def _flush_unique(session: AsyncSession) -> None:
    """Flush, turning a lost race on a unique index into the same 409 as the pre-check."""
    try:
        await session.flush()
    except IntegrityError:
        raise Conflict("That username or email is already taken") from None


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
    await _flush_unique(session)
    return user


async def enqueue_pending_purges(tx: Transaction, arq: ArqRedis, user_id: uuid.UUID | None = None) -> int:
    """(Re-)enqueue unfinished purges from the outbox; ARQ job ids make this idempotent."""
    query = select(PurgeRequest).where(PurgeRequest.completed_at.is_(None))
    if user_id is not None:
        query = query.where(PurgeRequest.user_id == user_id)
    pending = (await tx.session.scalars(query)).all()
    for request in pending:
        await enqueue_purge(arq, request.service, request.user_id)
        request.enqueued_at = utcnow()
    return len(pending)


async def mark_purge_finished(tx: Transaction, user_id: uuid.UUID, service: str) -> None:
    await tx.session.execute(
        update(PurgeRequest)
        .where(PurgeRequest.user_id == user_id, PurgeRequest.service == service)
        .values(completed_at=utcnow())
    )


async def revoke_refresh_tokens(
    tx: Transaction, user_id: uuid.UUID, except_family: uuid.UUID | None = None
) -> set[uuid.UUID]:
    """Revoke the user's live refresh tokens; returns the sessions (families) they belonged to."""
    query = update(RefreshToken).where(RefreshToken.user_id == user_id, RefreshToken.revoked_at.is_(None))
    if except_family is not None:
        query = query.where(RefreshToken.family_id != except_family)
    result = await tx.session.execute(query.values(revoked_at=utcnow()).returning(RefreshToken.family_id))
    return set(result.scalars().all())


@dataclass
class AuthService:
    """Holds the process-wide parts; methods take the transaction they work in (a route's,
    the worker's or the CLI's), and never commit it themselves unless a refusal must persist."""

    settings: AuthSettings
    issuer: AccessTokenIssuer
    throttle: LoginThrottle
    registrations: RedisRateLimit  # per client IP
    revocations: RevocationList

    # ---- accounts -------------------------------------------------------------------
    async def register(self, tx: Transaction, data: RegisterRequest, client_ip: str) -> User:
        if not self.settings.registration_open:
            raise Forbidden("Registration is closed", code="registration_closed")
        if not await self.registrations.hit("register", client_ip):
            raise await self.registrations.rejection(
                "too_many_attempts",
                "Too many registrations from this address; try again later",
                "register",
                client_ip,
            )
        return await create_user(tx.session, data)

    async def get_active_user(self, tx: Transaction, user_id: uuid.UUID) -> User:
        user = await tx.session.get(User, user_id)
        if user is None or not user.is_active:
            raise Unauthenticated("Account not found or disabled")
        return user

    async def update_profile(
        self,
        tx: Transaction,
        user: User,
        *,
        email: str | None,
        username: str | None,
        current_password: str | None,
        client_ip: str,
    ) -> User:
        if email is not None and normalize_email(email) != user.email:
            # Whoever holds a stolen access token must not be able to take the account over.
            await self._check_current_password(user, current_password, client_ip)
        await _ensure_unique(tx.session, email=email, username=username, exclude=user.id)
        if email is not None:
            user.email = normalize_email(email)
        if username is not None:
            user.username = username
        user.updated_at = utcnow()
        tx.session.add(user)
        await _flush_unique(tx.session)
        return user

    async def _check_current_password(self, user: User, password: str | None, client_ip: str) -> None:
        """The current password, throttled like a sign-in (a stolen token must not probe it)."""
        if not password:
            raise Forbidden("Changing the email needs the current password", code="current_password_required")
        await self.throttle.check_ip(client_ip)
        key = throttle_key(user, user.username)
        await self.throttle.attempt(key)
        ok, _ = await verify_password(user.password_hash, password)
        if not ok:
            raise Forbidden("Current password is incorrect", code="invalid_credentials")
        await self.throttle.succeeded(key)

    async def change_password(
        self, tx: Transaction, user: User, current: str, new: str, keep_session: str | None, client_ip: str
    ) -> None:
        await self._check_current_password(user, current, client_ip)
        user.password_hash = await hash_password(new)
        user.updated_at = utcnow()
        tx.session.add(user)
        keep = uuid.UUID(keep_session) if keep_session else None
        ended = await revoke_refresh_tokens(tx, user.id, except_family=keep)
        # The other sessions' access tokens stop working too, not just their refresh tokens.
        tx.after_commit(lambda: self.revocations.revoke_sessions(ended))

    # ---- sessions -------------------------------------------------------------------
    async def login(self, tx: Transaction, login: str, password: str, client_ip: str) -> dict:
        await self.throttle.check_ip(client_ip)
        user = await user_by_login(tx.session, login)
        key = throttle_key(user, login)
        await self.throttle.attempt(key)
        ok, needs_rehash = await verify_password(user.password_hash if user else None, password)
        if user is None or not ok:
            raise Unauthenticated("Incorrect username or password", code="invalid_credentials")
        await self.throttle.succeeded(key)
        if not user.is_active:
            raise Forbidden("This account is disabled", code="account_disabled")
        if user.password_reset_required:
            raise Forbidden(
                "This account still has a well-known default password: an administrator must set "
                "a new password before it can sign in",
                code="password_reset_required",
            )
        if needs_rehash:  # legacy bcrypt or outdated argon2 parameters
            user.password_hash = await hash_password(password)
            tx.session.add(user)
        return await self._issue_pair(tx, user, family_id=uuid.uuid4())

    async def refresh(self, tx: Transaction, refresh_token: str) -> dict:
        token_hash = hash_refresh_token(refresh_token)
        query = select(RefreshToken).where(RefreshToken.token_hash == token_hash).with_for_update()
        stored = (await tx.session.scalars(query)).first()
        if stored is None or stored.revoked_at is not None:
            raise _bad_refresh()
        if stored.used_at is not None:
            # A spent token came back: someone holds a copy. Kill the whole family, and keep
            # that even though the request is refused.
            await self._revoke_family(tx, stored.family_id)
            family = stored.family_id
            tx.after_commit(lambda: self.revocations.revoke_sessions([family]))
            await tx.commit()
            raise Unauthenticated(
                "Refresh token was already used; all sessions from that login are revoked",
                code="refresh_token_reused",
            )
        if stored.expires_at <= utcnow():
            raise _bad_refresh()
        user = await tx.session.get(User, stored.user_id)
        if user is None or not user.is_active:
            raise _bad_refresh()
        stored.used_at = utcnow()
        tx.session.add(stored)
        return await self._issue_pair(tx, user, family_id=stored.family_id)

    async def logout(self, tx: Transaction, refresh_token: str) -> None:
        query = select(RefreshToken.family_id).where(
            RefreshToken.token_hash == hash_refresh_token(refresh_token)
        )
        family_id = await tx.session.scalar(query)
        if family_id is not None:
            await self._revoke_family(tx, family_id)
            tx.after_commit(lambda: self.revocations.revoke_sessions([family_id]))

    async def _issue_pair(self, tx: Transaction, user: User, family_id: uuid.UUID) -> dict:
        token, token_hash = new_refresh_token()
        tx.session.add(
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

    async def _revoke_family(self, tx: Transaction, family_id: uuid.UUID) -> None:
        await tx.session.execute(
            update(RefreshToken)
            .where(RefreshToken.family_id == family_id, RefreshToken.revoked_at.is_(None))
            .values(revoked_at=utcnow())
        )


@dataclass
class AdminService:
    """User administration: the admin API and the ``create-admin`` CLI both come through here,
    so every change is written to the audit log the same way."""

    revocations: RevocationList
    arq: ArqRedis
    sessions: async_sessionmaker[AsyncSession]

    async def list_users(
        self, tx: Transaction, *, limit: int, offset: int, q: str | None
    ) -> tuple[list[User], int]:
        query = select(User)
        if q:
            pattern = like_pattern(q)
            query = query.where(or_(User.username.ilike(pattern), User.email.ilike(pattern)))
        total = await tx.session.scalar(select(func.count()).select_from(query.subquery()))
        page = query.order_by(User.created_at, User.id).limit(limit).offset(offset)
        users = (await tx.session.scalars(page)).all()
        return list(users), int(total or 0)

    async def get_user(self, tx: Transaction, user_id: uuid.UUID) -> User:
        user = await tx.session.get(User, user_id)
        if user is None:
            raise NotFound("User not found")
        return user

    async def admin_create_user(
        self, tx: Transaction, actor: uuid.UUID | None, data: AdminUserCreate
    ) -> User:
        user = await create_user(tx.session, data, is_admin=data.is_admin, is_active=data.is_active)
        self._audit(tx, actor, "user.create", user.id, {"username": user.username, "is_admin": user.is_admin})
        return user

    async def create_or_promote_admin(self, tx: Transaction, username: str, email: str, password: str) -> str:
        """The CLI's bootstrap (``make admin``): no acting admin, still audited."""
        user = await user_by_login(tx.session, username)
        if user is None:
            data = AdminUserCreate(username=username, email=email, password=password, is_admin=True)
            user = await self.admin_create_user(tx, None, data)
            return f"created admin {user.username} ({user.id})"
        changes = {"is_admin": True, "is_active": True}
        await self.admin_update_user(tx, None, user.id, AdminUserUpdate(**changes))
        return f"promoted admin {user.username} ({user.id})"

    async def admin_update_user(
        self, tx: Transaction, actor: uuid.UUID | None, user_id: uuid.UUID, data: AdminUserUpdate
    ) -> User:
        await tx.session.execute(ADMIN_LOCK_SQL)
        user = await self.get_user(tx, user_id)
        changes = data.model_dump(exclude_unset=True, exclude_none=True)
        loses_admin = (
            user.is_admin
            and user.is_active
            and (changes.get("is_admin") is False or changes.get("is_active") is False)
        )
        if loses_admin:
            await self._guard_last_admin(tx, user.id)
        await _ensure_unique(tx.session, email=data.email, username=data.username, exclude=user.id)
        password = changes.pop("password", None)
        for name, value in changes.items():
            setattr(user, name, normalize_email(value) if name == "email" else value)
        if password is not None:
            # An admin's reset: the only way out of password_reset_required; old sessions end.
            user.password_hash = await hash_password(password)
            user.password_reset_required = False
            changes["password_set"] = True  # the audit log says it changed, never what to
        user.updated_at = utcnow()
        tx.session.add(user)
        if changes.get("is_active") is False or password is not None:
            await revoke_refresh_tokens(tx, user.id)
            # Only once the change is durable: every token issued before it stops working.
            tx.after_commit(lambda: self.revocations.revoke_user(user_id))
        self._audit(tx, actor, "user.update", user.id, changes)
        await _flush_unique(tx.session)
        return user

    async def admin_delete_user(self, tx: Transaction, actor: uuid.UUID | None, user_id: uuid.UUID) -> None:
        if actor == user_id:
            raise Conflict("Admins cannot delete their own account", code="cannot_delete_self")
        await tx.session.execute(ADMIN_LOCK_SQL)
        user = await self.get_user(tx, user_id)
        if user.is_admin and user.is_active:
            await self._guard_last_admin(tx, user.id)
        self._audit(tx, actor, "user.delete", user.id, {"username": user.username})
        for service in PURGE_SERVICES:
            tx.session.add(PurgeRequest(user_id=user.id, service=service))
        await tx.session.delete(user)
        tx.after_commit(lambda: self.revocations.revoke_user(user_id))
        tx.after_commit(lambda: self._enqueue_purges(user_id))

    async def _enqueue_purges(self, user_id: uuid.UUID) -> None:
        """After the delete committed; the worker's cron re-enqueues if Redis drops these."""
        async with transaction(self.sessions, None) as tx:
            await enqueue_pending_purges(tx, self.arq, user_id=user_id)

    async def list_audit(self, tx: Transaction, *, limit: int, offset: int) -> tuple[list[AuditEntry], int]:
        total = await tx.session.scalar(select(func.count()).select_from(AuditEntry))
        query = select(AuditEntry).order_by(AuditEntry.created_at.desc()).limit(limit).offset(offset)
        entries = (await tx.session.scalars(query)).all()
        return list(entries), int(total or 0)

    async def _guard_last_admin(self, tx: Transaction, user_id: uuid.UUID) -> None:
        others = (
            select(func.count()).select_from(User).where(User.is_admin, User.is_active, User.id != user_id)
        )
        if await tx.session.scalar(others) == 0:
            raise Conflict(
                "The last active admin cannot be demoted, deactivated or deleted", code="last_admin"
            )

    @staticmethod
    def _audit(
        tx: Transaction,
        actor: uuid.UUID | None,
        action: str,
        target: uuid.UUID | None,
        details: dict[str, Any],
    ) -> None:
        tx.session.add(AuditEntry(actor_id=actor, action=action, target_user_id=target, details=details))
