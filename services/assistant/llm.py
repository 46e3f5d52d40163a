"""One client for every language model: OpenAI-compatible chat completions, streamed.

The ``local`` backend is the llama.cpp server ``make run`` starts (``services.llm``), the
``openai`` backend any compatible server (OpenAI, Ollama, vLLM, LM Studio); both speak the same
protocol, so one class serves both. ``none`` has no model: :func:`create_chat_model` returns
None and answers are extractive.

Connection errors, 429 and 5xx *before the first token* are retried with backoff (the server's
``Retry-After`` honoured); after that :class:`ModelUnavailable`. A failure once tokens have
flowed is :class:`ModelInterrupted`: the caller keeps what it has.
"""

import json
from collections.abc import AsyncIterator, Sequence
from contextlib import AsyncExitStack
from typing import Any

import httpx
import structlog
from httpx_sse import EventSource, aconnect_sse
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, stop_after_attempt
from tenacity.wait import wait_exponential_jitter

from services.assistant.settings import AssistantSettings
from shared.openai_compat import RetryableStatus, api_error_message, retry_after_seconds

log = structlog.get_logger(__name__)

Message = dict[str, str]


class ModelError(Exception):
    """The model gave no usable answer."""


class ModelUnavailable(ModelError):
    """Unreachable, overloaded or refusing, before any token: nothing was written."""


class ModelInterrupted(ModelError):
    """The stream broke after tokens had flowed."""


class ChatModel:
    def __init__(self, settings: AssistantSettings, client: httpx.AsyncClient | None = None) -> None:
        self.name = settings.chat_model
        self.backend = settings.llm_backend
        self._url = settings.chat_base_url + "/chat/completions"
        self._settings = settings
        self._headers = {"Accept": "text/event-stream"}
        if settings.llm_api_key is not None:
            self._headers["Authorization"] = f"Bearer {settings.llm_api_key.get_secret_value()}"
        self._client = client or httpx.AsyncClient(
            timeout=httpx.Timeout(
                connect=settings.llm_connect_timeout_seconds,
                read=settings.llm_read_timeout_seconds,
                write=10.0,
                pool=10.0,
            )
        )
        self._backoff = wait_exponential_jitter(
            initial=settings.llm_retry_base_seconds,
            max=settings.llm_retry_max_seconds,
            jitter=settings.llm_retry_base_seconds,
        )

    async def aclose(self) -> None:
        await self._client.aclose()

    def _wait(self, state: RetryCallState) -> float:
        error = state.outcome.exception() if state.outcome else None
        seconds = retry_after_seconds(error.retry_after) if isinstance(error, RetryableStatus) else None
        return min(self._backoff(state) if seconds is None else seconds, self._settings.llm_retry_max_seconds)

    def _body(self, messages: Sequence[Message], max_tokens: int, stream: bool) -> dict[str, Any]:
        return {
            "model": self.name,
            "messages": list(messages),
            "max_tokens": max_tokens,
            "temperature": self._settings.llm_temperature,
            "stream": stream,
        }

    async def stream(self, messages: Sequence[Message], max_tokens: int) -> AsyncIterator[str]:
        """The answer's text pieces as the model writes them."""
        async with AsyncExitStack() as stack:
            events, first = await self._open(stack, self._body(messages, max_tokens, stream=True))
            if first:
                yield first
            try:
                async for event in events:
                    if event.data.strip() == "[DONE]":
                        return
                    piece = _delta(event.data)
                    if piece:
                        yield piece
            except (httpx.HTTPError, ValueError) as exc:
                raise ModelInterrupted(f"the model's stream broke: {exc!r}") from exc

    async def complete(self, messages: Sequence[Message], max_tokens: int) -> str:
        """The whole answer at once (used for short tasks such as rewriting a question)."""
        return "".join([piece async for piece in self.stream(messages, max_tokens)])

    async def _open(self, stack: AsyncExitStack, body: dict[str, Any]) -> tuple[AsyncIterator, str]:
        """Connect and read up to the first token, retrying what is worth retrying."""
        retrying = AsyncRetrying(
            stop=stop_after_attempt(self._settings.llm_max_attempts),
            wait=self._wait,
            retry=retry_if_exception_type((RetryableStatus, httpx.TransportError)),
            before_sleep=lambda state: log.warning(
                "llm_retry", attempt=state.attempt_number, error=repr(state.outcome.exception())[:200]
            ),
            reraise=True,
        )
        try:
            async for attempt in retrying:
                with attempt:
                    async with AsyncExitStack() as trial:
                        source: EventSource = await trial.enter_async_context(
                            aconnect_sse(self._client, "POST", self._url, json=body, headers=self._headers)
                        )
                        response = source.response
                        if response.status_code == 429 or response.status_code >= 500:
                            await response.aread()
                            raise RetryableStatus(response)
                        if not response.is_success:
                            await response.aread()
                            reason = api_error_message(response)
                            raise ModelUnavailable(
                                f"the model server answered {response.status_code}: {reason}"
                            )
                        events = source.aiter_sse()
                        first = await _first_piece(events)
                        stack.push_async_exit(trial.pop_all())
                        return events, first
        except RetryableStatus as exc:
            raise ModelUnavailable(f"the model server answered {exc.status} repeatedly") from None
        except httpx.TransportError as exc:
            raise ModelUnavailable(f"the model server is unreachable: {exc!r}") from None
        except (httpx.HTTPError, ValueError) as exc:
            raise ModelUnavailable(f"the model server's answer was unreadable: {exc!r}") from None
        raise AssertionError("unreachable: tenacity either returns or raises")


async def _first_piece(events: AsyncIterator) -> str:
    """Read events until the first text (or the end); empty if the model said nothing."""
    async for event in events:
        if event.data.strip() == "[DONE]":
            return ""
        piece = _delta(event.data)
        if piece:
            return piece
    return ""


def _delta(data: str) -> str:
    payload = json.loads(data)
    if "error" in payload:
        raise ValueError(f"the model reported an error: {str(payload['error'])[:300]}")
    choices = payload.get("choices") or []
    if not choices:
        return ""
    choice = choices[0]
    delta = choice.get("delta") or choice.get("message") or {}
    content = delta.get("content")
    return content if isinstance(content, str) else ""


def create_chat_model(settings: AssistantSettings) -> ChatModel | None:
    """The configured model; None for ``PAI_LLM_BACKEND=none`` (extractive answers)."""
    return None if settings.llm_backend == "none" else ChatModel(settings)
