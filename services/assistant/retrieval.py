"""Passages for a question, from the documents and mail services over HTTP.

The assistant never reads another service's tables or vectors: it calls their search APIs
with the caller's own bearer token (so their row-level security and tenants apply) and the
request id. Both lists are fused by reciprocal rank, near-duplicates dropped, irrelevant
passages dropped, and the rest packed into the model's context by a token budget.
"""

import asyncio
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

import httpx
import structlog
from pydantic import ValidationError

from services.assistant.grounding import content_words
from shared.passages import Passage, PassageList

log = structlog.get_logger(__name__)

SourceName = Literal["documents", "mail"]
RRF_K = 60
# Two passages sharing this much of their words say the same thing (a forwarded email, the
# same paragraph in two uploads): only the better ranked one is kept.
DUPLICATE_OVERLAP = 0.8
# A rough, deliberately pessimistic token count for budgeting (English runs ~4 characters per
# token; code, numbers and other languages run fewer).
CHARS_PER_TOKEN = 3.0
LOOKUP_BATCH = 200  # ids per look-up (the list endpoints' page limit)


def estimate_tokens(text: str) -> int:
    return int(len(text) / CHARS_PER_TOKEN) + 1


@dataclass(frozen=True)
class Filters:
    sources: frozenset[SourceName] = frozenset({"documents", "mail"})
    document_ids: tuple[uuid.UUID, ...] = ()
    account_ids: tuple[uuid.UUID, ...] = ()
    after: datetime | None = None
    before: datetime | None = None


@dataclass
class Retrieved:
    passages: list[Passage] = field(default_factory=list)
    failed: list[SourceName] = field(default_factory=list)  # services that could not be searched

    @property
    def warnings(self) -> list[str]:
        return [f"{source}_unavailable" for source in self.failed]


class SourceUnavailable(Exception):
    pass


class SourceClient:
    """Search and look-up calls to the documents and mail services, as the caller."""

    def __init__(
        self, documents_url: str, mail_url: str, timeout: float, client: httpx.AsyncClient | None = None
    ):
        self._urls: dict[SourceName, str] = {"documents": documents_url, "mail": mail_url}
        self._timeout = timeout
        self._client = client or httpx.AsyncClient(timeout=timeout)

    async def aclose(self) -> None:
        await self._client.aclose()

    @staticmethod
    def _headers(token: str, request_id: str | None) -> dict[str, str]:
        headers = {"Authorization": f"Bearer {token}"}
        if request_id:
            headers["X-Request-ID"] = request_id
        return headers

    async def search(
        self, source: SourceName, query: str, k: int, filters: Filters, token: str, request_id: str | None
    ) -> list[Passage]:
        params: list[tuple[str, str]] = [("q", query[:1000]), ("k", str(min(k, 50)))]
        if source == "documents":
            path = "/documents/search"
            params += [("document_id", str(i)) for i in filters.document_ids]
        else:
            path = "/mail/search"
            params += [("account_id", str(i)) for i in filters.account_ids]
        if filters.after:
            params.append(("after", filters.after.isoformat()))
        if filters.before:
            params.append(("before", filters.before.isoformat()))
        try:
            response = await self._client.get(
                self._urls[source] + path, params=params, headers=self._headers(token, request_id)
            )
        except httpx.HTTPError as exc:
            raise SourceUnavailable(f"{source}: {exc!r}") from None
        if response.status_code != 200:
            raise SourceUnavailable(f"{source} answered {response.status_code}: {response.text[:200]}")
        try:
            return PassageList.model_validate_json(response.content).results
        except ValidationError as exc:
            raise SourceUnavailable(f"{source} answered an unreadable body: {exc}") from None

    async def existing(
        self, source: SourceName, ids: Sequence[uuid.UUID], token: str, request_id: str | None
    ) -> set[uuid.UUID] | None:
        """Which of ``ids`` the caller can still open; None when the service cannot tell now."""
        path = "/documents" if source == "documents" else "/mail/emails"
        found: set[uuid.UUID] = set()
        for start in range(0, len(ids), LOOKUP_BATCH):
            batch = ids[start : start + LOOKUP_BATCH]
            params = [("id", str(i)) for i in batch] + [("limit", str(len(batch)))]
            try:
                response = await self._client.get(
                    self._urls[source] + path, params=params, headers=self._headers(token, request_id)
                )
                response.raise_for_status()
                found |= {uuid.UUID(item["id"]) for item in response.json()["items"]}
            except (httpx.HTTPError, ValueError, KeyError, TypeError) as exc:
                log.warning("availability_unknown", source=source, error=repr(exc)[:200])
                return None
        return found


def _is_relevant(passage: Passage, question_words: set[str], min_similarity: float) -> bool:
    """Close in meaning (cosine similarity), or sharing half the question's content words."""
    if passage.similarity is not None and passage.similarity >= min_similarity:
        return True
    if not question_words:
        return False
    shared = question_words & content_words(passage.text + " " + (passage.title or passage.subject or ""))
    return len(shared) / len(question_words) >= 0.5


def fuse(rankings: Sequence[Sequence[Passage]]) -> list[Passage]:
    """Reciprocal-rank fusion of several rankings, near-duplicates dropped."""
    scores: dict[uuid.UUID, float] = {}
    by_id: dict[uuid.UUID, Passage] = {}
    for ranking in rankings:
        for rank, passage in enumerate(ranking, start=1):
            scores[passage.chunk_id] = scores.get(passage.chunk_id, 0.0) + 1.0 / (RRF_K + rank)
            by_id.setdefault(passage.chunk_id, passage)
    fused: list[Passage] = []
    seen: list[set[str]] = []
    for chunk_id in sorted(scores, key=lambda c: -scores[c]):
        words = content_words(by_id[chunk_id].text)
        if any(
            words and len(words & other) / min(len(words), len(other) or 1) >= DUPLICATE_OVERLAP
            for other in seen
        ):
            continue
        seen.append(words)
        fused.append(by_id[chunk_id].model_copy(update={"score": round(scores[chunk_id], 6)}))
    return fused


def pack(passages: Sequence[Passage], budget_tokens: int, limit: int) -> list[Passage]:
    """The best passages that fit the budget, in rank order (one too long is skipped, not cut)."""
    packed, used = [], 0
    for passage in passages:
        cost = estimate_tokens(passage.text) + 30  # the passage's heading
        if used + cost > budget_tokens:
            continue
        packed.append(passage)
        used += cost
        if len(packed) == limit:
            break
    return packed


async def retrieve(
    client: SourceClient,
    query: str,
    filters: Filters,
    *,
    k: int,
    min_similarity: float,
    token: str,
    request_id: str | None,
) -> Retrieved:
    """Search every requested source at once; a source that fails or is slow is left out with a
    warning (``<source>_unavailable``) instead of failing the answer."""
    order: list[SourceName] = [s for s in ("documents", "mail") if s in filters.sources]
    results = await asyncio.gather(
        *(client.search(source, query, k, filters, token, request_id) for source in order),
        return_exceptions=True,
    )
    retrieved = Retrieved()
    rankings = []
    for source, result in zip(order, results, strict=True):
        if isinstance(result, BaseException):
            if not isinstance(result, SourceUnavailable):
                raise result
            log.warning("source_unavailable", source=source, error=str(result)[:300])
            retrieved.failed.append(source)
            continue
        rankings.append(result)
    words = content_words(query)
    retrieved.passages = [p for p in fuse(rankings) if _is_relevant(p, words, min_similarity)]
    return retrieved
