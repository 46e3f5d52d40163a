"""What the gateway does so that one client cannot use up what every client shares.

* :class:`InFlight` caps the requests one client (the user, else the IP) has in flight, long
  streams included, so a few hundred slow connections from one place get 429 instead of the
  upstream pool.
* :func:`read_small_body` reads a public endpoint's body (sign-in, registration) whole, with
  a size cap and a deadline, *before* an upstream connection is taken: a body trickled one
  byte at a time holds only its own gateway connection, and ends in 408.
* :class:`BodyGuard` streams every other body (uploads) upstream as it arrives, but ends it
  with 408 when it stalls longer than the idle timeout or falls below the minimum rate.

Oversized and slow *headers* are refused before any of this, by every server's HTTP protocol
(``shared/http_protocol.py``).
"""

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

from starlette.requests import ClientDisconnect, Request
from starlette.types import Receive, Scope, Send

from shared.errors import RateLimited, RequestTimeout, TooLarge


class InFlight:
    """Requests in flight per client in this gateway process."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._counts: dict[str, int] = {}

    def take(self, client: str) -> Callable[[], None]:
        """One slot for ``client`` (429 when all are taken); call the result to give it back."""
        count = self._counts.get(client, 0)
        if count >= self._limit:
            raise RateLimited(f"At most {self._limit} requests in flight per client", retry_after=1)
        self._counts[client] = count + 1
        released = False

        def release() -> None:
            nonlocal released
            if not released:
                released = True
                remaining = self._counts.get(client, 1) - 1
                if remaining:
                    self._counts[client] = remaining
                else:
                    self._counts.pop(client, None)

        return release


class ReleaseAfter:
    """An ASGI response that gives its in-flight slot back once it is fully sent (or the
    client left), so a long stream keeps its slot for as long as it lasts."""

    def __init__(self, response, release: Callable[[], None]) -> None:
        self.response = response
        self.release = release

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await self.response(scope, receive, send)
        finally:
            self.release()


async def read_small_body(request: Request, max_bytes: int, deadline_seconds: float) -> bytes:
    """The whole body, at most ``max_bytes``, within ``deadline_seconds`` (413 / 408)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise TooLarge(f"The request body exceeds {max_bytes} bytes")

    async def read() -> bytes:
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > max_bytes:
                raise TooLarge(f"The request body exceeds {max_bytes} bytes")
        return bytes(body)

    try:
        return await asyncio.wait_for(read(), deadline_seconds)
    except TimeoutError:
        raise RequestTimeout(f"The request body did not arrive within {deadline_seconds:g} s") from None
    except ClientDisconnect:
        raise RequestTimeout("The client left before sending its request body") from None


@dataclass
class BodyGuard:
    """Wraps a streamed body: no gap longer than ``idle_seconds``, and after ``grace_seconds``
    at least ``min_rate`` bytes per second on average. ``failure`` says why it stopped."""

    idle_seconds: float
    min_rate: float
    grace_seconds: float
    failure: RequestTimeout | None = field(default=None, init=False)

    async def stream(self, chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        loop = asyncio.get_running_loop()
        started, received = loop.time(), 0
        iterator = chunks.__aiter__()
        while True:
            try:
                chunk = await asyncio.wait_for(iterator.__anext__(), self.idle_seconds)
            except StopAsyncIteration:
                return
            except TimeoutError:
                self.failure = RequestTimeout(f"The request body stalled for {self.idle_seconds:g} s")
                raise self.failure from None
            received += len(chunk)
            elapsed = loop.time() - started
            if elapsed > self.grace_seconds and received < self.min_rate * elapsed:
                self.failure = RequestTimeout(
                    f"The request body arrives slower than {self.min_rate:g} bytes per second"
                )
                raise self.failure
            yield chunk
