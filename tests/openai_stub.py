"""A stand-in for an OpenAI-compatible server, speaking the real wire format:
``POST /v1/embeddings`` and ``POST /v1/chat/completions`` (streamed as server-sent events, or
whole).

Chat answers are scripted with :meth:`StubState.chat`: the pieces to stream, a delay between
them, a break after some of them. Unscripted, a streamed answer repeats the first sentence of
source [1] of the prompt with its marker, and a short (non-streamed) completion repeats the
question it was asked to rewrite. Every chat stream is logged (:class:`ChatLog`): when its
first and last pieces were sent and whether the client left early.

Vectors are deterministic (seeded by a hash of model and text), so tests can compute what they
expect. Tests script it through :class:`StubState`: replies to send first (429 with Retry-After,
400, malformed bodies), answers in shuffled order, a required API key; it records every request.
:class:`StubServer` runs it with uvicorn in a background thread on a free port; or run it alone
with ``python tests/openai_stub.py PORT``.
"""

import asyncio
import hashlib
import json
import random
import re
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import uvicorn


def fake_embedding(model: str, text: str, dimension: int) -> list[float]:
    """The vector the stub returns for ``text``: the same every time, different per text."""
    rng = random.Random(hashlib.sha256(f"{model}\0{text}".encode()).digest())
    return [rng.uniform(-1.0, 1.0) for _ in range(dimension)]


def error_body(message: str, code: str | None = None) -> dict[str, Any]:
    """OpenAI's error shape."""
    return {"error": {"message": message, "type": "invalid_request_error", "param": None, "code": code}}


@dataclass
class Reply:
    """A scripted answer, sent instead of a real one. ``body`` bytes are sent as they are."""

    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Received:
    headers: dict[str, str]
    body: Any


@dataclass
class ChatReply:
    """A scripted chat answer: ``pieces`` streamed ``delay`` seconds apart; with ``break_after``
    the connection is dropped after that many pieces (a server failing mid-answer)."""

    pieces: list[str]
    delay: float = 0.0
    break_after: int | None = None


@dataclass
class ChatLog:
    first_sent: float | None = None
    last_sent: float | None = None
    pieces_sent: int = 0
    disconnected: bool = False
    finished: bool = False


@dataclass
class StubState:
    api_key: str | None = None  # if set, requests need "Authorization: Bearer <api_key>"
    dimension: int = 8
    shuffle: bool = False  # answer with ``data`` in reverse index order
    script: deque[Reply] = field(default_factory=deque)
    requests: list[Received] = field(default_factory=list)
    chat_script: deque[ChatReply] = field(default_factory=deque)
    chats: list[ChatLog] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def reset(self) -> None:
        with self.lock:
            self.api_key = None
            self.dimension = 8
            self.shuffle = False
            self.script.clear()
            self.requests.clear()
            self.chat_script.clear()
            self.chats.clear()

    def chat(self, *pieces: str, delay: float = 0.0, break_after: int | None = None) -> None:
        """Script the next chat answer."""
        with self.lock:
            self.chat_script.append(ChatReply(list(pieces), delay, break_after))

    @property
    def chat_requests(self) -> list[Any]:
        return [r.body for r in self.requests if isinstance(r.body, dict) and "messages" in r.body]

    def fail_next(self, count: int, status: int, retry_after: str | None = None, message: str = "") -> None:
        headers = {"retry-after": retry_after} if retry_after is not None else {}
        body = error_body(message or f"stub failure {status}")
        with self.lock:
            self.script.extend(Reply(status, body, headers) for _ in range(count))

    @property
    def inputs(self) -> list[Any]:
        """The ``input`` of every request received, in order."""
        return [r.body.get("input") if isinstance(r.body, dict) else None for r in self.requests]


class OpenAIStub:
    def __init__(self, state: StubState | None = None) -> None:
        self.state = state or StubState()

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return
        raw = b""
        more = True
        while more:
            message = await receive()
            raw += message.get("body", b"")
            more = message.get("more_body", False)
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        state = self.state
        with state.lock:
            state.requests.append(Received(headers, body))
            scripted = state.script.popleft() if state.script else None
        authorized = state.api_key is None or headers.get("authorization") == f"Bearer {state.api_key}"
        chat = scope["path"] == "/v1/chat/completions" and isinstance(body, dict) and "messages" in body
        if scripted is None and chat and authorized:
            await self._chat(receive, send, body)
            return
        reply = scripted or self._answer(scope, headers, body)
        await self._send(send, reply)

    def _next_chat(self, body: dict) -> ChatReply:
        with self.state.lock:
            if self.state.chat_script:
                return self.state.chat_script.popleft()
        messages = body.get("messages") or [{}]
        system = str(messages[0].get("content", ""))
        if system.startswith("Rewrite"):  # asked to rewrite a follow-up: give the question back
            last = str(messages[-1].get("content", ""))
            asked = re.findall(r"User: (.*)", last)
            return ChatReply([asked[-1] if asked else last])
        source = re.search(r"^\[1\][^\n]*\n([^\n]*)", system, re.MULTILINE)
        sentence = re.split(r"(?<=[.!?])\s", source.group(1))[0].rstrip(".!?") if source else "I do not know"
        return ChatReply([f"{word} " for word in sentence.split()] + ["[1]."])

    async def _chat(self, receive, send, body: dict) -> None:
        reply = self._next_chat(body)
        model = body.get("model", "stub")
        if not body.get("stream"):
            message = {"role": "assistant", "content": "".join(reply.pieces)}
            answer = {
                "object": "chat.completion",
                "model": model,
                "choices": [{"index": 0, "message": message}],
            }
            await self._send(send, Reply(200, answer))
            return
        log = ChatLog()
        with self.state.lock:
            self.state.chats.append(log)
        headers = [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        # The request body is read: the next message is the client's disconnect.
        gone = asyncio.ensure_future(receive())
        try:
            for index, piece in enumerate(reply.pieces):
                if gone.done():
                    log.disconnected = True
                    return
                if reply.break_after is not None and index == reply.break_after:
                    raise ConnectionAbortedError("scripted failure mid-answer")
                if index and reply.delay:
                    await asyncio.sleep(reply.delay)
                chunk = {
                    "object": "chat.completion.chunk",
                    "model": model,
                    "choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}],
                }
                await send(
                    {
                        "type": "http.response.body",
                        "body": f"data: {json.dumps(chunk)}\n\n".encode(),
                        "more_body": True,
                    }
                )
                log.pieces_sent += 1
                log.first_sent = log.first_sent or time.monotonic()
                log.last_sent = time.monotonic()
            await send({"type": "http.response.body", "body": b"data: [DONE]\n\n", "more_body": False})
            log.finished = True
        finally:
            gone.cancel()

    def _answer(self, scope, headers: dict[str, str], body: Any) -> Reply:
        state = self.state
        if scope["method"] != "POST" or scope["path"] != "/v1/embeddings":
            return Reply(404, error_body(f"Invalid URL ({scope['method']} {scope['path']})"))
        if state.api_key is not None and headers.get("authorization") != f"Bearer {state.api_key}":
            return Reply(401, error_body("Incorrect API key provided.", "invalid_api_key"))
        if not isinstance(body, dict) or not isinstance(body.get("model"), str):
            return Reply(400, error_body("you must provide a model parameter"))
        texts = body.get("input")
        if isinstance(texts, str):
            texts = [texts]
        if not isinstance(texts, list) or not texts or not all(isinstance(t, str) and t for t in texts):
            return Reply(400, error_body("'$.input' is invalid. Please check the API reference."))
        model = body["model"]
        data = [
            {"object": "embedding", "index": i, "embedding": fake_embedding(model, text, state.dimension)}
            for i, text in enumerate(texts)
        ]
        if state.shuffle:
            data.reverse()
        tokens = sum(len(t.split()) for t in texts)
        usage = {"prompt_tokens": tokens, "total_tokens": tokens}
        return Reply(200, {"object": "list", "data": data, "model": model, "usage": usage})

    @staticmethod
    async def _send(send, reply: Reply) -> None:
        payload = reply.body if isinstance(reply.body, bytes) else json.dumps(reply.body).encode()
        headers = [(b"content-type", b"application/json")]
        headers += [(k.encode(), v.encode()) for k, v in reply.headers.items()]
        await send({"type": "http.response.start", "status": reply.status, "headers": headers})
        await send({"type": "http.response.body", "body": payload})


class StubServer:
    """The stub served by uvicorn in a daemon thread; ``base_url`` ends in ``/v1`` like OpenAI's."""

    def __init__(self, port: int, state: StubState | None = None) -> None:
        self.app = OpenAIStub(state)
        self.state = self.app.state
        self.base_url = f"http://127.0.0.1:{port}/v1"
        config = uvicorn.Config(self.app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, name="openai-stub", daemon=True)

    def start(self) -> "StubServer":
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the OpenAI stub did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)


if __name__ == "__main__":
    uvicorn.run(OpenAIStub(), host="127.0.0.1", port=int(sys.argv[1]), log_level="warning")
