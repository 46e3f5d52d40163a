"""Batching across callers: every process's requests are merged into shared forward passes.

On a CPU the model's throughput grows with the batch (one pass over 64 texts costs far less
than 64 passes over one), while each caller sends what it has: an ingestion batch, a single
search query. :class:`Batcher` queues requests and encodes them together, up to
``max_batch`` texts per pass. Small requests (search queries) go first, so a query waits for
at most the pass already running, never behind a whole backlog of ingestion. A small request
for texts already queued or being encoded waits for those vectors instead of another pass:
the assistant's two searches (documents and mail) send the same question at the same moment.
When nothing has come for ``idle_seconds`` after a pass, ``on_idle`` runs once (the process
gives the passes' freed buffers back to the OS, see shared/memory.py).
"""

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import structlog
from prometheus_client import Counter

from shared.errors import Invalid, NotFound, Unavailable

log = structlog.get_logger(__name__)

# Requests of at most this many texts are served first (queries are one text).
SMALL_REQUEST = 4

PASSES = Counter("pai_embedding_passes", "Forward passes of the embedding model")
TEXTS = Counter("pai_embedding_texts", "Texts embedded")
REQUESTS = Counter("pai_embedding_requests", "Embedding requests served (merged into passes)")
SHARED = Counter("pai_embedding_shared_requests", "Requests answered by an identical one in flight")


@dataclass
class _Request:
    texts: Sequence[str]
    future: asyncio.Future[list[list[float]]]


@dataclass
class Batcher:
    """Runs ``encode`` (synchronous, CPU-bound) in a thread over merged requests."""

    encode: Callable[[list[str], int | None], list[list[float]]]  # texts, torch threads
    max_batch: int
    max_wait_seconds: float
    on_idle: Callable[[], object] | None = None  # run in a thread once the batcher goes idle
    idle_seconds: float = 1.0
    _small: asyncio.Queue[_Request] = field(default_factory=asyncio.Queue)
    _large: asyncio.Queue[_Request] = field(default_factory=asyncio.Queue)
    _wakeup: asyncio.Event = field(default_factory=asyncio.Event)
    _task: asyncio.Task[None] | None = None
    _in_flight: dict[tuple[str, ...], asyncio.Future[list[list[float]]]] = field(default_factory=dict)
    passes: int = 0

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="embedding-batcher")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        if not self.running:
            raise Unavailable("The embedding model is not running", code="embeddings_unavailable")
        small = len(texts) <= SMALL_REQUEST
        key = tuple(texts)
        if small and (same := self._in_flight.get(key)) is not None:
            SHARED.inc()
            return await asyncio.shield(same)  # a caller that goes away leaves it to the others
        request = _Request(texts, asyncio.get_running_loop().create_future())
        if small:
            self._in_flight[key] = request.future
            request.future.add_done_callback(lambda _: self._in_flight.pop(key, None))
        (self._small if small else self._large).put_nowait(request)
        self._wakeup.set()
        return await asyncio.shield(request.future)

    def _take(self, budget: int) -> _Request | None:
        """The next request that fits in ``budget`` texts (a larger one only as a pass's first)."""
        for queue in (self._small, self._large):
            if not queue.empty():
                head = queue._queue[0]  # type: ignore[attr-defined]  # peek without taking
                if len(head.texts) <= budget:
                    return queue.get_nowait()
        return None

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        busy_since_idle = False
        while True:
            if self._small.empty() and self._large.empty():
                self._wakeup.clear()
                if busy_since_idle and self.on_idle is not None:
                    try:
                        await asyncio.wait_for(self._wakeup.wait(), self.idle_seconds)
                    except TimeoutError:
                        await asyncio.to_thread(self.on_idle)
                        busy_since_idle = False
                else:
                    await self._wakeup.wait()
                continue
            busy_since_idle = True
            first = self._take(budget=self.max_batch + 10**9)  # never None: a queue is not empty
            assert first is not None
            batch, size = [first], len(first.texts)
            deadline = loop.time() + self.max_wait_seconds
            while size < self.max_batch:
                request = self._take(self.max_batch - size)
                if request is not None:
                    batch.append(request)
                    size += len(request.texts)
                    continue
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                self._wakeup.clear()
                try:  # wait for another request to join this pass, up to the deadline
                    await asyncio.wait_for(self._wakeup.wait(), remaining)
                except TimeoutError:
                    break
            await self._encode(batch)

    async def _encode(self, batch: list[_Request]) -> None:
        texts = [text for request in batch for text in request.texts]
        threads = 1 if len(texts) <= SMALL_REQUEST else None  # a query: one core is as fast
        try:
            vectors = await asyncio.to_thread(self.encode, texts, threads)
        except Exception as exc:
            log.exception("embedding_failed", texts=len(texts))
            for request in batch:
                if not request.future.done():
                    request.future.set_exception(
                        Unavailable(f"The embedding model failed: {type(exc).__name__}")
                    )
            return
        self.passes += 1
        PASSES.inc()
        TEXTS.inc(len(texts))
        REQUESTS.inc(len(batch))
        start = 0
        for request in batch:
            end = start + len(request.texts)
            if not request.future.done():  # the caller may have gone
                request.future.set_result(vectors[start:end])
            start = end


@dataclass
class EmbeddingsService:
    """What the API offers: vectors for texts, from the one model this process holds."""

    model: str  # the name clients ask for (``all-MiniLM-L6-v2``)
    dimension: int
    precision: str
    batcher: Batcher
    max_inputs: int
    max_chars: int

    async def embed(self, texts: Sequence[str], model: str | None) -> list[list[float]]:
        if model and model not in (self.model, f"local/{self.model}"):
            raise NotFound(f"This server embeds with {self.model!r}, not {model!r}", code="model_not_found")
        if not texts:
            raise Invalid("input: at least one text is needed")
        if len(texts) > self.max_inputs:
            raise Invalid(f"input: at most {self.max_inputs} texts per request")
        if any(len(text) > self.max_chars for text in texts):
            raise Invalid(f"input: each text has at most {self.max_chars} characters")
        return await self.batcher.embed(texts)
