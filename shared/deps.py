"""FastAPI dependencies every service uses: the caller and the request's transaction.

``Tx`` / ``UserTx`` open one :class:`~shared.db.Transaction` per request around the route
function and commit it *before* the response is sent (``scope="function"``), so a client never
sees success for a write that failed to commit.
"""

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request

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
