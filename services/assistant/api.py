"""HTTP routes of the assistant service: thin wrappers over :mod:`.service` and :mod:`.answering`."""

import json
import uuid
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import JSONResponse
from sse_starlette import EventSourceResponse, ServerSentEvent

from services.assistant import service
from services.assistant.answering import Answerer, Event, collect
from services.assistant.retrieval import SourceClient
from services.assistant.schemas import (
    ConversationDetail,
    ConversationPage,
    ConversationUpdate,
    FeedbackIn,
    QueryIn,
    QueryOut,
    QueryPage,
)
from shared.auth import bearer_token
from shared.deps import CurrentPrincipal, Offset, UserTx
from shared.middleware import REQUEST_ID_HEADER


def get_answerer(request: Request) -> Answerer:
    return request.app.state.answerer


def get_sources(request: Request) -> SourceClient:
    return request.app.state.sources


AnswererDep = Annotated[Answerer, Depends(get_answerer)]
SourcesDep = Annotated[SourceClient, Depends(get_sources)]

queries = APIRouter(prefix="/queries", tags=["queries"])
conversations = APIRouter(prefix="/conversations", tags=["conversations"])

STREAM_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


class Caller:
    """The caller's bearer token and request id, passed on to the services it reads from
    (depending on ``CurrentPrincipal`` verifies the token before it is passed anywhere)."""

    def __init__(self, request: Request, principal: CurrentPrincipal) -> None:
        self.token = bearer_token(request.headers.get("authorization"))
        self.request_id = request.headers.get(REQUEST_ID_HEADER)


CallerDep = Annotated[Caller, Depends(Caller)]


async def _sse(events: AsyncIterator[Event]) -> AsyncIterator[ServerSentEvent]:
    async for event in events:
        yield ServerSentEvent(data=json.dumps(event.data, separators=(",", ":")), event=event.name)


@queries.post(
    "",
    status_code=201,
    response_model=QueryOut,
    responses={
        200: {
            "description": "With `Accept: text/event-stream`: the answer as server-sent events "
            "(query, sources, delta..., then done or error)",
            "content": {"text/event-stream": {"schema": {"type": "string"}}},
        },
        429: {"description": "Too many answers in progress for this user (Retry-After)"},
    },
)
async def ask(
    body: QueryIn, request: Request, principal: CurrentPrincipal, caller: CallerDep, answerer: AnswererDep
) -> Response:
    """Ask a question; the answer is written from the caller's own documents and mail, cited."""
    slot = await answerer.reserve(principal.user_id)  # 429 before anything starts
    events = answerer.answer(principal.user_id, slot, body, caller.token, caller.request_id)
    if "text/event-stream" in request.headers.get("accept", ""):
        return EventSourceResponse(
            _sse(events), ping=answerer.settings.heartbeat_seconds, headers=STREAM_HEADERS
        )
    return JSONResponse(await collect(events), status_code=201)


@queries.get("", response_model=QueryPage)
async def list_queries(
    tx: UserTx,
    caller: CallerDep,
    sources: SourcesDep,
    conversation_id: uuid.UUID | None = None,
    q: Annotated[str | None, Query(max_length=200)] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    offset: Offset = 0,
) -> dict:
    items, total = await service.list_queries(
        tx, conversation_id=conversation_id, q=q, limit=limit, offset=offset
    )
    await service.mark_availability(items, sources, caller.token, caller.request_id)
    return {"items": items, "total": total}


@queries.get("/{query_id}", response_model=QueryOut)
async def get_query(query_id: uuid.UUID, tx: UserTx, caller: CallerDep, sources: SourcesDep) -> QueryOut:
    query = await service.get_query(tx, query_id)
    await service.mark_availability([query], sources, caller.token, caller.request_id)
    return query


@queries.delete("/{query_id}", status_code=204)
async def delete_query(query_id: uuid.UUID, tx: UserTx) -> Response:
    await service.delete_query(tx, query_id)
    return Response(status_code=204)


@queries.post("/{query_id}/feedback", response_model=QueryOut)
async def feedback(
    query_id: uuid.UUID, body: FeedbackIn, tx: UserTx, caller: CallerDep, sources: SourcesDep
) -> QueryOut:
    query = await service.set_feedback(tx, query_id, body)
    await service.mark_availability([query], sources, caller.token, caller.request_id)
    return query


@conversations.get("", response_model=ConversationPage)
async def list_conversations(
    tx: UserTx, limit: Annotated[int, Query(ge=1, le=100)] = 20, offset: Offset = 0
) -> dict:
    items, total = await service.list_conversations(tx, limit=limit, offset=offset)
    return {"items": items, "total": total}


@conversations.get("/{conversation_id}", response_model=ConversationDetail)
async def get_conversation(
    conversation_id: uuid.UUID, tx: UserTx, caller: CallerDep, sources: SourcesDep
) -> dict:
    conversation = await service.get_conversation(tx, conversation_id)
    await service.mark_availability(conversation["queries"], sources, caller.token, caller.request_id)
    return conversation


@conversations.patch("/{conversation_id}", response_model=ConversationDetail)
async def rename_conversation(
    conversation_id: uuid.UUID, body: ConversationUpdate, tx: UserTx, caller: CallerDep, sources: SourcesDep
) -> dict:
    conversation = await service.rename_conversation(tx, conversation_id, body.title)
    await service.mark_availability(conversation["queries"], sources, caller.token, caller.request_id)
    return conversation


@conversations.delete("/{conversation_id}", status_code=204)
async def delete_conversation(conversation_id: uuid.UUID, tx: UserTx) -> Response:
    await service.delete_conversation(tx, conversation_id)
    return Response(status_code=204)
