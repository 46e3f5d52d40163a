"""Async engine and session factory (SQLModel over asyncpg), one per process."""

import uuid

from sqlalchemy import event, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)


def asyncpg_url(url: str) -> str:
    """Accept plain ``postgresql://`` DSNs (as operators write them) and pick the asyncpg driver."""
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres", "postgresql+asyncpg"):
        parsed = parsed.set(drivername="postgresql+asyncpg")
    return parsed.render_as_string(hide_password=False)


def create_engine(url: str, *, pool_size: int = 10) -> AsyncEngine:
    """An engine whose connections speak UTC, so timestamps never depend on the server's zone."""
    return create_async_engine(
        asyncpg_url(url),
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_pre_ping=True,
        connect_args={"server_settings": {"timezone": "UTC"}},
    )


def session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, class_=AsyncSession, expire_on_commit=False)


def user_session(factory: async_sessionmaker[AsyncSession], user_id: uuid.UUID) -> AsyncSession:
    """A session whose every transaction runs as ``user_id`` for row-level security.

    Policies compare ``owner_id`` with the transaction-local setting ``app.user_id``; it is set
    at the start of each transaction (``SET LOCAL`` semantics), so a commit never leaks it to
    the pooled connection's next user, and a query without it sees no rows at all.
    """
    session = factory()

    @event.listens_for(session.sync_session, "after_begin")
    def _act_as_user(_session, _transaction, connection) -> None:
        connection.execute(
            text("SELECT set_config('app.user_id', :user_id, true)"), {"user_id": str(user_id)}
        )

    return session


def like_pattern(text: str) -> str:
    """``text`` as a substring pattern for LIKE/ILIKE, its wildcards taken literally."""
    return "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
