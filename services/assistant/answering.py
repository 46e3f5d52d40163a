"""Writing an answer: the question, its sources, the model's text with checked citations.

:meth:`Answerer.answer` yields the events of one answer, the same for the streamed response
(server-sent events) and the plain JSON one (which waits for ``done``):

``query`` (id, conversation) → ``sources`` (every passage handed to the model, numbered from
1) → ``delta`` (text, many) → exactly one of ``done`` (the stored query) or ``error``.

The query row is written first (``incomplete``) and the finished answer in a second short
transaction, so no database connection is held while the model writes. If the client leaves or
anything fails mid-answer, what was written is stored as ``incomplete``.
"""

import re
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import aclosing
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import anyio
import structlog
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.assistant import metrics
from services.assistant import service as store
from services.assistant.citations import CitationStream
from services.assistant.dates import extract_dates
from services.assistant.grounding import content_words, extractive_sentences, quote
from services.assistant.limits import AnswerSlots
from services.assistant.llm import ChatModel, ModelError, ModelInterrupted, ModelUnavailable
from services.assistant.models import QueryStatus
from services.assistant.prompts import (
    NO_SOURCES_ANSWER,
    Turn,
    answer_messages,
    fit_history,
    prompt_tokens,
    rewrite_messages,
)
from services.assistant.retrieval import Filters, SourceClient, pack, retrieve
from services.assistant.schemas import QueryIn, SourceOut
from services.assistant.settings import AssistantSettings
from shared.db import transaction
from shared.passages import Passage

log = structlog.get_logger(__name__)

# Words that make a question lean on the one before ("what about *her* invoices?").
_REFERRING = re.compile(
    r"\b(it|its|they|them|their|theirs|he|him|his|she|her|hers|those|these|what about|how about)\b",
    re.IGNORECASE,
)


class NoSourceAvailable(Exception):
    """Every source service asked for failed: there is nothing to answer from."""


@dataclass(frozen=True)
class Event:
    name: str
    data: dict[str, Any]
    # With ``error``: the query as stored (partial or failed), for clients that do not stream.
    stored: dict[str, Any] | None = None


def ms_since(started: float) -> float:
    """Milliseconds since ``started`` (a ``time.monotonic()`` reading), to 0.1 ms."""
    return round((time.monotonic() - started) * 1000, 1)


def heuristic_standalone(question: str, history: Sequence[Turn]) -> str:
    """Without a model: a question that refers back ("and her phone number?") or is very short
    gets the previous question's content words it lacks, in brackets."""
    if not history:
        return question
    words = content_words(question)
    if not _REFERRING.search(question) and len(words) >= 4:
        return question
    previous = history[-1].question
    have = {w.lower() for w in re.findall(r"[^\W_]+", question)}
    missing = [w for w in re.findall(r"[^\W_]+", previous) if w.lower() in content_words(previous) - words]
    missing = [w for w in dict.fromkeys(missing) if w.lower() not in have]
    return f"{question} ({' '.join(missing)})" if missing else question


def _sane_rewrite(rewrite: str, question: str, history: Sequence[Turn]) -> bool:
    """A small model's rewrite is kept only if it stays about the conversation."""
    if not rewrite or len(rewrite) > 3 * len(question) + 300 or "\n\n" in rewrite.strip():
        return False
    context = content_words(question) | content_words(" ".join(t.question for t in history))
    return bool(content_words(rewrite) & context)


def source_out(n: int, passage: Passage, question: str) -> SourceOut:
    return SourceOut(
        n=n,
        kind=passage.kind,
        chunk_id=passage.chunk_id,
        document_id=passage.document_id,
        title=passage.title,
        page=passage.page,
        email_id=passage.email_id,
        attachment_id=passage.attachment_id,
        account_id=passage.account_id,
        subject=passage.subject,
        sender=passage.sender,
        sent_at=passage.sent_at,
        quote=quote(passage.text, [question]),
        text=passage.text,
        score=passage.score,
    )


def extractive_answer(question: str, passages: Sequence[Passage], limit: int = 3) -> str:
    """The most relevant sentences of the top passages, each with its marker."""
    parts = []
    for n, passage in enumerate(passages[:limit], start=1):
        for sentence in extractive_sentences(passage.text, question, limit=1):
            body = sentence.rstrip().rstrip(".!?")
            parts.append(f"{body} [{n}].")
    return " ".join(parts)


class Answerer:
    def __init__(
        self,
        settings: AssistantSettings,
        sessions: async_sessionmaker[AsyncSession],
        sources: SourceClient,
        model: ChatModel | None,
        slots: AnswerSlots,
    ) -> None:
        self.settings = settings
        self.sessions = sessions
        self.sources = sources
        self.model = model
        self.slots = slots
        self.backend = settings.llm_backend

    async def reserve(self, user_id: uuid.UUID) -> str:
        """Take one of the user's answer slots (429 beyond the limit) before anything streams."""
        slot = uuid.uuid4().hex
        await self.slots.take(user_id, slot)
        return slot

    async def answer(
        self, user_id: uuid.UUID, slot: str, body: QueryIn, token: str, request_id: str | None
    ) -> AsyncIterator[Event]:
        try:
            async for event in self._answer(user_id, body, token, request_id):
                yield event
        finally:
            with anyio.CancelScope(shield=True):
                await self.slots.give_back(user_id, slot)

    async def _answer(
        self, user_id: uuid.UUID, body: QueryIn, token: str, request_id: str | None
    ) -> AsyncIterator[Event]:
        started = time.monotonic()
        settings = self.settings
        async with transaction(self.sessions, user_id) as tx:
            query, history = await store.start_query(tx, body, settings.history_turns)
        yield Event("query", {"id": str(query.id), "conversation_id": str(query.conversation_id)})

        result = store.Answer(standalone_question=body.question, answer="", status=QueryStatus.INCOMPLETE)
        result.model = self.model.name if self.model else None
        citations: CitationStream | None = None
        error: dict[str, str] | None = None  # the error event's data, if the answer fails
        try:
            standalone = await self._standalone(body.question, history)
            dated = extract_dates(standalone, datetime.now(UTC))
            result.standalone_question = dated.text
            filters = Filters(
                sources=frozenset(body.sources),
                document_ids=tuple(body.document_ids or ()),
                account_ids=tuple(body.account_ids or ()),
                after=body.after or (dated.range.after if dated.range else None),
                before=body.before or (dated.range.before if dated.range else None),
            )
            retrieval_started = time.monotonic()
            retrieved = await retrieve(
                self.sources,
                dated.search_text,
                filters,
                k=settings.search_k,
                min_similarity=settings.min_similarity,
                token=token,
                request_id=request_id,
            )
            result.retrieval_ms = ms_since(retrieval_started)
            metrics.RETRIEVAL.observe(result.retrieval_ms / 1000)
            result.warnings.extend(retrieved.warnings)
            if len(retrieved.failed) == len(filters.sources):
                yield Event("sources", {"sources": []})
                raise NoSourceAvailable

            history = fit_history(history, settings.llm_context_tokens // 4)
            budget = (
                settings.llm_context_tokens
                - settings.llm_max_answer_tokens
                - prompt_tokens(body.question, history)
            )
            passages = pack(retrieved.passages, budget, body.k or settings.max_sources)
            result.sources = [source_out(n, p, dated.search_text) for n, p in enumerate(passages, start=1)]
            yield Event("sources", {"sources": [s.model_dump(mode="json") for s in result.sources]})

            citations = CitationStream([p.text for p in passages])
            if not passages:
                result.status = QueryStatus.NO_SOURCES
                result.model = None
                yield Event("delta", {"text": citations.feed(NO_SOURCES_ANSWER) + citations.finish()})
            else:
                async for text in self._write(body.question, passages, history, citations, result, started):
                    yield Event("delta", {"text": text})
                result.status = QueryStatus.COMPLETE
        except NoSourceAvailable:
            result.status = QueryStatus.FAILED
            error = {"code": "sources_unavailable", "message": "No source can be searched now"}
        except ModelInterrupted as exc:
            log.warning("answer_interrupted", error=str(exc)[:300])
            error = {
                "code": "model_interrupted",
                "message": "The model stopped before the answer was complete",
            }
        except Exception:
            log.exception("answer_failed")
            error = {"code": "internal_error", "message": "The answer could not be completed"}
        finally:
            if citations is not None:
                self._settle(result, citations)
            result.total_ms = ms_since(started)
            with anyio.CancelScope(shield=True):
                async with transaction(self.sessions, user_id) as tx:
                    await store.finish_query(tx, query.id, result)
                    stored = await store.get_query(tx, query.id)
            metrics.ANSWERS.labels(result.status, self.backend).inc()
            metrics.TOTAL.labels(self.backend).observe(result.total_ms / 1000)
        if error is not None:
            yield Event("error", error, stored.model_dump(mode="json"))
        else:
            yield Event("done", stored.model_dump(mode="json"))

    async def _standalone(self, question: str, history: Sequence[Turn]) -> str:
        if not history:
            return question
        if self.model is not None:
            try:
                rewrite = (await self.model.complete(rewrite_messages(question, history), 96)).strip()
                rewrite = rewrite.strip('"').splitlines()[0].strip() if rewrite else ""
                if _sane_rewrite(rewrite, question, history):
                    return rewrite
            except ModelError as exc:
                log.warning("rewrite_failed", error=str(exc)[:200])
        return heuristic_standalone(question, history)

    async def _write(
        self,
        question: str,
        passages: Sequence[Passage],
        history: Sequence[Turn],
        citations: CitationStream,
        result: store.Answer,
        started: float,
    ) -> AsyncIterator[str]:
        """The answer's text as it may be shown; the model's, or extractive without one."""
        if self.model is not None:
            messages = answer_messages(question, passages, history)
            try:
                async with aclosing(
                    self.model.stream(messages, self.settings.llm_max_answer_tokens)
                ) as pieces:
                    async for piece in pieces:
                        if result.first_token_ms is None:
                            result.first_token_ms = ms_since(started)
                            metrics.FIRST_TOKEN.labels(self.backend).observe(result.first_token_ms / 1000)
                        shown = citations.feed(piece)
                        if shown:
                            yield shown
                tail = citations.finish()
                if tail:
                    yield tail
                return
            except ModelUnavailable as exc:  # raised before any token: nothing was shown
                log.warning("model_unavailable", error=str(exc)[:300])
                result.warnings.append("llm_unavailable")
        result.model = None
        shown = citations.feed(extractive_answer(question, passages)) + citations.finish()
        result.first_token_ms = ms_since(started)
        yield shown

    @staticmethod
    def _settle(result: store.Answer, citations: CitationStream) -> None:
        """The answer as streamed, its citations with the quotes that support them."""
        result.answer = citations.text
        result.cited = list(citations.cited)
        result.unsupported_sentences = citations.unsupported
        for source in result.sources:
            claims = citations.cited_by.get(source.n)
            if claims:
                source.quote = quote(source.text, claims)


async def collect(events: AsyncIterator[Event]) -> dict[str, Any]:
    """The stored query of an answer, for clients that do not stream (it ends with ``done``,
    or with ``error`` carrying the query as stored)."""
    stored: dict[str, Any] | None = None
    async for event in events:
        if event.name == "done":
            stored = event.data
        elif event.name == "error":
            stored = event.stored
    if stored is None:
        raise RuntimeError("an answer ended without its stored query")
    return stored
