"""Async engine and session factory (SQLModel over asyncpg), one per process, and the one
transaction convention every service follows.

Service functions take the :class:`Transaction` they work in. Whoever calls them opens it with
:func:`transaction`: a route through the ``Tx``/``UserTx`` dependencies (``shared.deps``), a
worker job, a CLI or an importer directly. The transaction commits when the block ends without
an error and rolls back otherwise; effects that must only happen once the data is durable (a
Redis marker, a job enqueue) are registered with :meth:`Transaction.after_commit` and run after
the commit, in registration order.
"""

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import ColumnElement, Select, event, text
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


Effect = Callable[[], Awaitable[object]]


@dataclass
class Transaction:
    """One unit of work: the session (acting as ``user_id`` for row-level security when set)
    and what to do once it has committed."""

    session: AsyncSession
    user_id: uuid.UUID | None = None
    _effects: list[Effect] = field(default_factory=list, repr=False)

    @property
    def owner_id(self) -> uuid.UUID:
        """The user this transaction acts as; user-data services work in nothing else."""
        if self.user_id is None:
            raise RuntimeError("this work happens inside a user's transaction (row-level security)")
        return self.user_id

    def after_commit(self, effect: Effect) -> None:
        """Run ``effect`` once the transaction has committed (never if it rolls back)."""
        self._effects.append(effect)

    async def commit(self) -> None:
        """Commit now (for a refusal that must still record something), then run the effects
        registered so far. The session stays usable; the block's end commits what follows."""
        await self.session.commit()
        effects, self._effects = self._effects, []
        for effect in effects:
            await effect()


@asynccontextmanager
async def transaction(
    sessions: async_sessionmaker[AsyncSession], user_id: uuid.UUID | None = None
) -> AsyncIterator[Transaction]:
    """Open a transaction (as ``user_id`` under row-level security when given); commit on
    success, roll back on any exception, then run the after-commit effects."""
    session = user_session(sessions, user_id) if user_id is not None else sessions()
    async with session:
        tx = Transaction(session, user_id)
        yield tx
        await tx.commit()


def within(query: Select, column: ColumnElement, after: datetime | None, before: datetime | None) -> Select:
    """``query`` kept to rows whose ``column`` lies in [after, before) (either end optional)."""
    if after is not None:
        query = query.where(column >= after)
    if before is not None:
        query = query.where(column < before)
    return query


def like_pattern(text: str) -> str:
    """``text`` as a substring pattern for LIKE/ILIKE, its wildcards taken literally."""
    return "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
