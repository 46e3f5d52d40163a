"""FastAPI dependencies every service uses: the caller and the request's transaction.

``Tx`` / ``UserTx`` open one :class:`~shared.db.Transaction` per request around the route
function and commit it *before* the response is sent (``scope="function"``), so a client never
sees success for a write that failed to commit.
"""

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Annotated

from fastapi import Depends, Query, Request
from pydantic import AfterValidator

from shared.auth import Principal, principal_dependency
from shared.db import Transaction, transaction

CurrentPrincipal = Annotated[
    Principal, Depends(principal_dependency(lambda request: request.app.state.verifier))
]


async def _transaction(request: Request) -> AsyncIterator[Transaction]:
    async with transaction(request.app.state.session_factory) as tx:
        yield tx


async def _user_transaction(request: Request, principal: CurrentPrincipal) -> AsyncIterator[Transaction]:
    async with transaction(request.app.state.session_factory, principal.user_id) as tx:
        yield tx


# A transaction without a user (tables without row-level security, e.g. auth's).
Tx = Annotated[Transaction, Depends(_transaction, scope="function")]
# A transaction acting as the authenticated caller under row-level security.
UserTx = Annotated[Transaction, Depends(_user_transaction, scope="function")]


# Paging: an offset past any real table, but within what Postgres and Python take (a larger one
# is a 422, not a database overflow).
MAX_OFFSET = 2**31 - 1
Offset = Annotated[int, Query(ge=0, le=MAX_OFFSET)]

EARLIEST, LATEST = datetime(1900, 1, 1, tzinfo=UTC), datetime(3000, 1, 1, tzinfo=UTC)


def _utc_within_range(value: datetime) -> datetime:
    """Naive means UTC; the instant must lie between 1900 and 3000 (beyond, converting or
    comparing it overflows somewhere)."""
    try:
        value = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    except OverflowError:
        raise ValueError("date out of range") from None
    if not EARLIEST <= value < LATEST:
        raise ValueError("date must lie between 1900 and 3000")
    return value


# A date filter from a query string: timezone-aware UTC, within a sane range.
Timestamp = Annotated[datetime, AfterValidator(_utc_within_range)]
