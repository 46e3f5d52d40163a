"""The assistant's stored data: conversations, queries with their answers, sources and feedback.

Every function takes the :class:`~shared.db.Transaction` it works in (acting as the caller under
row-level security), so a route, the answering pipeline, the worker and the legacy importer
all record and read queries the same way. Writing an answer is :mod:`.answering`.
"""

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import delete, func, or_, select
from sqlalchemy.dialects.postgresql import insert as pg_insert

from services.assistant.models import Conversation, Query, QueryStatus, Rating, Source
from services.assistant.prompts import Turn
from services.assistant.retrieval import SourceClient
from services.assistant.schemas import FeedbackIn, QueryIn, QueryOut, SourceOut
from shared.db import Transaction, like_pattern
from shared.errors import NotFound
from shared.models import utcnow

TITLE_CHARS = 80


def conversation_title(question: str) -> str:
    """The first question, on one line, shortened at a word boundary."""
    line = " ".join(question.split())
    if len(line) <= TITLE_CHARS:
        return line
    cut = line.rfind(" ", 0, TITLE_CHARS - 1)
    return line[: cut if cut > TITLE_CHARS // 2 else TITLE_CHARS - 1] + "…"


@dataclass
class Answer:
    """What the answering pipeline produced for one query."""

    standalone_question: str
    answer: str
    status: QueryStatus
    sources: list[SourceOut] = field(default_factory=list)
    cited: list[int] = field(default_factory=list)  # source numbers, in order of first use
    unsupported_sentences: int = 0
    warnings: list[str] = field(default_factory=list)
    model: str | None = None
    retrieval_ms: float | None = None
    first_token_ms: float | None = None
    total_ms: float | None = None


async def _conversation(tx: Transaction, conversation_id: uuid.UUID) -> Conversation:
    conversation = await tx.session.get(Conversation, conversation_id)
    if conversation is None:  # another user's id looks exactly like a missing one
        raise NotFound("Conversation not found")
    return conversation


async def _query(tx: Transaction, query_id: uuid.UUID) -> Query:
    query = await tx.session.get(Query, query_id)
    if query is None:
        raise NotFound("Query not found")
    return query


async def start_query(tx: Transaction, body: QueryIn, history_turns: int) -> tuple[Query, list[Turn]]:
    """Record the question (``incomplete`` until its answer is stored) in its conversation,
    a new one if none was named; return it with the conversation's recent answered turns."""
    history: list[Turn] = []
    if body.conversation_id is not None:
        conversation = await _conversation(tx, body.conversation_id)
        conversation.updated_at = utcnow()
        earlier = await tx.session.scalars(
            select(Query)
            .where(Query.conversation_id == conversation.id, Query.answer != "")
            .order_by(Query.created_at.desc())
            .limit(history_turns)
        )
        history = [Turn(q.standalone_question, q.answer) for q in reversed(earlier.all())]
    else:
        conversation = Conversation(owner_id=tx.owner_id, title=conversation_title(body.question))
        tx.session.add(conversation)
    query = Query(
        owner_id=tx.owner_id,
        conversation_id=conversation.id,
        question=body.question,
        standalone_question=body.question,
    )
    tx.session.add(query)
    await tx.session.flush()
    return query, history


async def finish_query(tx: Transaction, query_id: uuid.UUID, answer: Answer) -> Query:
    """Store the answer and its sources (replacing any stored before)."""
    query = await _query(tx, query_id)
    query.standalone_question = answer.standalone_question
    query.answer = answer.answer
    query.status = answer.status
    query.unsupported_sentences = answer.unsupported_sentences
    query.warnings = list(answer.warnings)
    query.model = answer.model
    query.retrieval_ms = answer.retrieval_ms
    query.first_token_ms = answer.first_token_ms
    query.total_ms = answer.total_ms
    await tx.session.execute(delete(Source).where(Source.query_id == query_id))
    cited = {n: position for position, n in enumerate(answer.cited, start=1)}
    for source in answer.sources:
        tx.session.add(
            Source(
                owner_id=tx.owner_id,
                query_id=query_id,
                cited=cited.get(source.n),
                chunk_id=source.chunk_id or uuid.uuid4(),
                **source.model_dump(exclude={"available", "chunk_id"}),
            )
        )
    await tx.session.flush()
    return query


async def _sources(tx: Transaction, query_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, list[Source]]:
    by_query: dict[uuid.UUID, list[Source]] = {query_id: [] for query_id in query_ids}
    if query_ids:
        rows = await tx.session.scalars(
            select(Source).where(Source.query_id.in_(query_ids)).order_by(Source.query_id, Source.n)
        )
        for source in rows.all():
            by_query[source.query_id].append(source)
    return by_query


def query_out(query: Query, sources: Sequence[Source]) -> QueryOut:
    outs = [SourceOut.model_validate(source) for source in sources]
    by_n = {source.n: out for source, out in zip(sources, outs, strict=True)}
    cited = sorted((s for s in sources if s.cited is not None), key=lambda s: s.cited or 0)
    feedback = None
    if query.feedback_rating and query.feedback_at:
        feedback = {
            "rating": query.feedback_rating,
            "comment": query.feedback_comment,
            "created_at": query.feedback_at,
        }
    return QueryOut(
        id=query.id,
        conversation_id=query.conversation_id,
        question=query.question,
        standalone_question=query.standalone_question,
        answer=query.answer,
        status=QueryStatus(query.status),
        citations=[by_n[s.n] for s in cited],
        sources=outs,
        unsupported_sentences=query.unsupported_sentences,
        warnings=list(query.warnings or []),
        model=query.model,
        timings={
            "retrieval_ms": query.retrieval_ms,
            "first_token_ms": query.first_token_ms,
            "total_ms": query.total_ms,
        },
        created_at=query.created_at,
        feedback=feedback,
        document_id=query.document_id,
    )


IMPORTED_WARNING = "imported_from_legacy"


@dataclass
class ImportedQuery:
    """A question and answer from the legacy app, which kept no sources or conversations."""

    id: uuid.UUID
    conversation_id: uuid.UUID
    question: str
    answer: str
    created_at: datetime
    document_id: uuid.UUID | None = None


async def record_imported_queries(tx: Transaction, items: Sequence[ImportedQuery]) -> set[uuid.UUID]:
    """Store each as a finished query in a conversation of its own (the legacy questions were
    each asked alone: continuing one must not feed unrelated older questions into the follow-up
    rewrite); those already there are left as they are. Returns the ids written now."""
    if not items:
        return set()
    owner_id = tx.owner_id
    conversations = [
        {
            "id": item.conversation_id,
            "owner_id": owner_id,
            "title": conversation_title(item.question) or "Imported question",
            "created_at": item.created_at,
            "updated_at": item.created_at,
        }
        for item in items
    ]
    await tx.session.execute(pg_insert(Conversation).on_conflict_do_nothing(), conversations)
    queries = [
        {
            "id": item.id,
            "owner_id": owner_id,
            "conversation_id": item.conversation_id,
            "question": item.question,
            "standalone_question": item.question,
            "answer": item.answer,
            "status": QueryStatus.COMPLETE if item.answer else QueryStatus.FAILED,
            "warnings": [IMPORTED_WARNING],
            "model": "legacy",
            "document_id": item.document_id,
            "created_at": item.created_at,
        }
        for item in items
    ]
    existing = set(
        (await tx.session.scalars(select(Query.id).where(Query.id.in_([item.id for item in items])))).all()
    )
    new = [row for row in queries if row["id"] not in existing]
    if new:
        await tx.session.execute(pg_insert(Query).on_conflict_do_nothing(), new)
    return {row["id"] for row in new}


async def queries_out(tx: Transaction, queries: Sequence[Query]) -> list[QueryOut]:
    sources = await _sources(tx, [q.id for q in queries])
    return [query_out(q, sources[q.id]) for q in queries]


async def get_query(tx: Transaction, query_id: uuid.UUID) -> QueryOut:
    return (await queries_out(tx, [await _query(tx, query_id)]))[0]


async def list_queries(
    tx: Transaction, *, conversation_id: uuid.UUID | None, q: str | None, limit: int, offset: int
) -> tuple[list[QueryOut], int]:
    query = select(Query)
    if conversation_id is not None:
        query = query.where(Query.conversation_id == conversation_id)
    if q:
        pattern = like_pattern(q)
        query = query.where(or_(Query.question.ilike(pattern), Query.answer.ilike(pattern)))
    total = await tx.session.scalar(select(func.count()).select_from(query.subquery()))
    page = await tx.session.scalars(
        query.order_by(Query.created_at.desc(), Query.id).limit(limit).offset(offset)
    )
    return await queries_out(tx, page.all()), int(total or 0)


async def delete_query(tx: Transaction, query_id: uuid.UUID) -> None:
    await tx.session.delete(await _query(tx, query_id))


async def set_feedback(tx: Transaction, query_id: uuid.UUID, feedback: FeedbackIn) -> QueryOut:
    query = await _query(tx, query_id)
    query.feedback_rating = Rating(feedback.rating)
    query.feedback_comment = feedback.comment
    query.feedback_at = utcnow()
    await tx.session.flush()
    return await get_query(tx, query_id)


def _with_counts():
    count = select(func.count()).where(Query.conversation_id == Conversation.id).scalar_subquery()
    return select(Conversation, count.label("query_count"))


def _conversation_out(conversation: Conversation, query_count: int) -> dict:
    return {**conversation.model_dump(exclude={"owner_id"}), "query_count": int(query_count)}


async def list_conversations(tx: Transaction, *, limit: int, offset: int) -> tuple[list[dict], int]:
    total = await tx.session.scalar(select(func.count()).select_from(Conversation))
    rows = await tx.session.execute(
        _with_counts().order_by(Conversation.updated_at.desc(), Conversation.id).limit(limit).offset(offset)
    )
    return [_conversation_out(c, n) for c, n in rows.all()], int(total or 0)


async def get_conversation(tx: Transaction, conversation_id: uuid.UUID) -> dict:
    row = (await tx.session.execute(_with_counts().where(Conversation.id == conversation_id))).first()
    if row is None:
        raise NotFound("Conversation not found")
    queries = await tx.session.scalars(
        select(Query).where(Query.conversation_id == conversation_id).order_by(Query.created_at, Query.id)
    )
    return {**_conversation_out(*row), "queries": await queries_out(tx, queries.all())}


async def rename_conversation(tx: Transaction, conversation_id: uuid.UUID, title: str) -> dict:
    conversation = await _conversation(tx, conversation_id)
    conversation.title = title.strip()
    conversation.updated_at = utcnow()
    await tx.session.flush()
    return await get_conversation(tx, conversation_id)


async def delete_conversation(tx: Transaction, conversation_id: uuid.UUID) -> None:
    await tx.session.delete(await _conversation(tx, conversation_id))  # its queries cascade


async def purge_user(tx: Transaction) -> int:
    """Everything of the transaction's user: conversations, queries, sources."""
    removed = await tx.session.scalar(select(func.count()).select_from(Query))
    await tx.session.execute(delete(Conversation))  # queries and sources cascade
    return int(removed or 0)


async def mark_availability(
    outs: Sequence[QueryOut], client: SourceClient, token: str, request_id: str | None
) -> None:
    """Set ``available`` on every source: does its document or email still exist for the
    caller? Asked of the owning services (one call each); null when one cannot tell now."""
    sources = [s for out in outs for s in out.sources]
    document_ids = list({s.document_id for s in sources if s.kind == "document" and s.document_id})
    email_ids = list({s.email_id for s in sources if s.kind != "document" and s.email_id})
    documents = await client.existing("documents", document_ids, token, request_id)
    emails = await client.existing("mail", email_ids, token, request_id)
    for source in sources:
        if source.kind == "document":
            known, key = documents, source.document_id
        else:
            known, key = emails, source.email_id
        source.available = None if known is None else key in known
