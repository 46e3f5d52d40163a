"""FastAPI dependencies every service uses: the request's DB session and the caller."""

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession

from shared.auth import Principal, principal_dependency


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    async with request.app.state.session_factory() as session:
        yield session


Session = Annotated[AsyncSession, Depends(get_session)]
CurrentPrincipal = Annotated[
    Principal, Depends(principal_dependency(lambda request: request.app.state.verifier))
]
