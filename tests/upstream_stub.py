"""A stand-in upstream for gateway tests: counts streamed bodies, echoes headers, streams big
responses, answers slowly (``/slow``, and ``/mail/search`` as a slow mail service).
Run as ``python tests/upstream_stub.py PORT``."""

import asyncio
import json
import sys

import uvicorn

CHUNK = b"x" * 65536


async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    path = scope["path"]
    query = dict(part.split("=", 1) for part in scope["query_string"].decode().split("&") if "=" in part)
    received = 0
    more = True
    while more:
        message = await receive()
        received += len(message.get("body", b""))
        more = message.get("more_body", False)

    if path.endswith("/big"):
        size = int(query.get("size", "0"))
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", b"application/octet-stream"),
                    (b"content-length", str(size).encode()),
                ],
            }
        )
        sent = 0
        while sent < size:
            chunk = CHUNK[: min(len(CHUNK), size - sent)]
            sent += len(chunk)
            await send({"type": "http.response.body", "body": chunk, "more_body": sent < size})
        return
    if path.endswith("/slow"):
        await asyncio.sleep(float(query.get("seconds", "5")))
    if path == "/mail/search":  # a mail service that takes 5 s to search
        await asyncio.sleep(5)
    body = {
        "path": path,
        "raw_path": scope["raw_path"].decode("latin-1"),
        "query": scope["query_string"].decode("latin-1"),
        "received": received,
        "headers": {k.decode(): v.decode() for k, v in scope["headers"]},
        "checks": {},
    }
    payload = json.dumps(body).encode()
    await send(
        {"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]}
    )
    await send({"type": "http.response.body", "body": payload})


if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning")
