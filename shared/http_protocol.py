"""uvicorn's httptools protocol with the two limits uvicorn lacks: a deadline for a request's
head (line and headers) and a cap on its size.

Without them a client can open connections and send headers a byte at a time, holding each
connection forever, or send one 32 MB header that the parser buffers whole (httptools
accumulates a header until it is complete; only then would any callback see it). Here every
byte of a head is counted as it arrives, before it is parsed: past ``max_head_bytes`` the
answer is 431, past ``head_timeout`` without the complete head it is 408; the connection is
closed either way. Idle keep-alive connections between requests are uvicorn's own
``timeout_keep_alive``.
"""

import asyncio
import json

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


def _raw_response(status: int, reason: str, code: str, message: str) -> bytes:
    body = json.dumps({"error": {"code": code, "message": message}}).encode()
    head = (
        f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
    )
    return head.encode("ascii") + body


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    """Set the class attributes before the server starts (``shared.cli.serve`` does)."""

    head_timeout: float = 10.0
    max_head_bytes: int = 32 * 1024

    _head_timer: asyncio.TimerHandle | None = None
    _in_head: bool = True
    _head_bytes: int = 0
    _tail: bytes = b""  # the last bytes seen, to find a head's end split across two chunks
    _refused: bool = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._start_head()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return
        if self._in_head:
            if self._head_timer is None:
                self._start_head()
            # Only the head counts: a chunk may carry its end and the start of the body.
            window = self._tail + data
            end = window.find(b"\r\n\r\n")
            self._head_bytes += len(data) if end < 0 else max(0, end + 4 - len(self._tail))
            self._tail = window[-3:] if end < 0 else b""
            if self._head_bytes > self.max_head_bytes:
                self._refuse(
                    431,
                    "Request Header Fields Too Large",
                    "request_header_fields_too_large",
                    f"The request line and headers exceed {self.max_head_bytes} bytes",
                )
                return
        super().data_received(data)

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._stop_timer()
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        # What arrives next on this connection is the next request's head; its deadline
        # starts with its first byte (until then the keep-alive timeout applies).
        self._in_head, self._head_bytes, self._tail = True, 0, b""

    def send_400_response(self, msg: str) -> None:
        if not self._refused:
            super().send_400_response(msg)

    def _start_head(self) -> None:
        self._stop_timer()
        self._head_timer = self.loop.call_later(self.head_timeout, self._head_too_slow)

    def _stop_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_too_slow(self) -> None:
        self._head_timer = None
        if self._in_head and not self.transport.is_closing():
            message = f"The request headers did not arrive within {self.head_timeout:g} s"
            self._refuse(408, "Request Timeout", "request_timeout", message)

    def _refuse(self, status: int, reason: str, code: str, message: str) -> None:
        self._refused = True
        self._stop_timer()
        if not self.transport.is_closing():
            self.transport.write(_raw_response(status, reason, code, message))
            self.transport.close()
