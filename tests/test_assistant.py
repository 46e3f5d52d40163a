"""Questions and answers through the gateway: cited, streamed answers from the caller's own
documents and mail, conversations and history, and what happens when parts fail.

The model here is the scripted OpenAI-compatible stand-in (``tests/openai_stub.py``), served
to a second assistant process and a second gateway routed to it; everything else is the real
stack. The real local model is tested in ``test_assistant_local_model.py``.
"""

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime

import httpx
import pytest
from httpx_sse import aconnect_sse

from tests import files
from tests.gmail_stub import mime_plain, mime_with_attachment
from tests.mail_support import connect, new_address, sync_now, wait_indexed
from tests.openai_stub import StubServer
from tests.support import free_port, wait_for
from tests.test_documents import uploaded_ready

PAGE_ONE = "The harbour crane was repaired in March by Nordic Lifts of Bergen."
PAGE_TWO = "The repair invoice total was 4200 euros, payable within thirty days."


@dataclass
class Scripted:
    gateway: str
    assistant: str
    model: StubServer


@pytest.fixture(scope="module")
def scripted(start_service) -> AsyncIterator[Scripted]:
    model = StubServer(free_port()).start()
    assistant, _ = start_service(
        "assistant",
        llm_backend="openai",
        llm_base_url=model.base_url,
        llm_model="stub-model",
        llm_max_attempts="2",
        llm_retry_base_seconds="0.05",
        llm_retry_max_seconds="0.2",
        heartbeat_seconds="1",
    )
    gateway, _ = start_service("gateway", assistant_url=assistant)
    yield Scripted(gateway, assistant, model)
    model.stop()


@pytest.fixture
async def api(scripted: Scripted) -> AsyncIterator[httpx.AsyncClient]:
    scripted.model.state.reset()
    async with httpx.AsyncClient(base_url=scripted.gateway, timeout=60.0) as client:
        yield client


@dataclass
class Received:
    name: str
    data: dict
    at: float


async def stream(client: httpx.AsyncClient, account, body: dict) -> tuple[httpx.Response, list[Received]]:
    events = []
    headers = {**account.headers, "Accept": "text/event-stream"}
    async with aconnect_sse(client, "POST", "/queries", json=body, headers=headers) as source:
        async for event in source.aiter_sse():
            events.append(Received(event.event, json.loads(event.data), time.monotonic()))
        return source.response, events


async def crane_document(gateway, account) -> dict:
    return await uploaded_ready(
        gateway, account, "crane.pdf", files.pdf([PAGE_ONE, PAGE_TWO]), title="Crane repair"
    )


async def test_streamed_answer_through_the_gateway(api, scripted, gateway, new_account):
    account = await new_account()
    document = await crane_document(gateway, account)
    # No marker for the invoice sentence (the server adds it), one to a source that does not exist.
    words = ["The", "repair", "invoice", "total", "was", "4200", "euros"]
    scripted.model.state.chat(*[w + " " for w in words], "[9]", ". Done.", delay=0.3)

    response, events = await stream(api, account, {"question": "What was the invoice total for the crane?"})

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.headers["cache-control"] == "no-cache"
    assert response.headers["x-accel-buffering"] == "no"
    names = [e.name for e in events]
    assert names[:2] == ["query", "sources"] and names[-1] == "done", names
    assert set(names[2:-1]) == {"delta"} and len(names) > 5, names
    chat = scripted.model.state.chats[-1]
    first_delta = next(e for e in events if e.name == "delta")
    assert first_delta.at < chat.last_sent, "the first text arrived only after the model had finished"

    done = events[-1].data
    streamed = "".join(e.data["text"] for e in events if e.name == "delta")
    assert done["answer"] == streamed
    assert "[9]" not in streamed
    assert done["status"] == "complete"
    assert done["id"] == events[0].data["id"] and done["conversation_id"] == events[0].data["conversation_id"]
    sources = events[1].data["sources"]
    assert [s["n"] for s in sources] == list(range(1, len(sources) + 1))
    assert {s["document_id"] for s in sources} == {document["id"]}
    cited = done["citations"]
    assert len(cited) == 1, done
    assert cited[0]["page"] == 2 and cited[0]["document_id"] == document["id"]
    assert cited[0]["quote"] in cited[0]["text"] and "4200 euros" in cited[0]["quote"]
    assert f"[{cited[0]['n']}]" in done["answer"]
    assert cited[0]["available"] is True
    assert done["model"] == "stub-model" and done["warnings"] == []
    assert done["timings"]["first_token_ms"] <= done["timings"]["total_ms"]
    stored = await api.get(f"/queries/{done['id']}", headers=account.headers)
    assert stored.json()["answer"] == streamed


async def test_citations_name_the_page_their_text_stands_on(api, scripted, gateway, new_account):
    account = await new_account()
    document = await crane_document(gateway, account)
    scripted.model.state.chat("Nordic Lifts of Bergen repaired the harbour crane in March.")
    response = await api.post(
        "/queries", json={"question": "Who repaired the crane?"}, headers=account.headers
    )
    assert response.status_code == 201, response.text
    cited = response.json()["citations"]
    assert [(c["document_id"], c["page"]) for c in cited] == [(document["id"], 1)]
    assert "Nordic Lifts" in cited[0]["quote"]


async def test_history_conversations_and_feedback(api, scripted, gateway, new_account):
    account = await new_account()
    await crane_document(gateway, account)
    first = (
        await api.post("/queries", json={"question": "Who repaired the crane?"}, headers=account.headers)
    ).json()
    conversation_id = first["conversation_id"]
    second = await api.post(
        "/queries",
        json={"question": "What did the repair invoice total?", "conversation_id": conversation_id},
        headers=account.headers,
    )
    assert second.status_code == 201 and second.json()["conversation_id"] == conversation_id

    page = (
        await api.get("/queries", params={"conversation_id": conversation_id}, headers=account.headers)
    ).json()
    assert page["total"] == 2 and [q["id"] for q in page["items"]][1] == first["id"]  # newest first
    found = (await api.get("/queries", params={"q": "invoice"}, headers=account.headers)).json()
    assert [q["id"] for q in found["items"]] == [second.json()["id"]]

    conversations = (await api.get("/conversations", headers=account.headers)).json()
    assert conversations["total"] == 1
    assert conversations["items"][0]["title"] == "Who repaired the crane?"
    assert conversations["items"][0]["query_count"] == 2
    renamed = await api.patch(
        f"/conversations/{conversation_id}", json={"title": "Crane"}, headers=account.headers
    )
    assert renamed.status_code == 200 and renamed.json()["title"] == "Crane"
    detail = (await api.get(f"/conversations/{conversation_id}", headers=account.headers)).json()
    assert [q["id"] for q in detail["queries"]] == [first["id"], second.json()["id"]]  # in order

    rated = await api.post(
        f"/queries/{first['id']}/feedback",
        json={"rating": "up", "comment": "spot on"},
        headers=account.headers,
    )
    assert rated.status_code == 200 and rated.json()["feedback"]["rating"] == "up"
    bad = await api.post(f"/queries/{first['id']}/feedback", json={"rating": "meh"}, headers=account.headers)
    assert bad.status_code == 422 and bad.json()["error"]["code"]

    assert (await api.delete(f"/queries/{first['id']}", headers=account.headers)).status_code == 204
    assert (await api.get(f"/queries/{first['id']}", headers=account.headers)).status_code == 404
    assert (await api.delete(f"/conversations/{conversation_id}", headers=account.headers)).status_code == 204
    assert (await api.get(f"/queries/{second.json()['id']}", headers=account.headers)).status_code == 404
    assert (await api.get("/conversations", headers=account.headers)).json()["total"] == 0


async def test_follow_up_is_rewritten_with_the_conversation(api, scripted, gateway, new_account):
    account = await new_account()
    await crane_document(gateway, account)
    first = (
        await api.post("/queries", json={"question": "Who repaired the crane?"}, headers=account.headers)
    ).json()
    state = scripted.model.state
    state.chat("How much did the harbour crane repair cost?")  # the rewrite
    state.chat("It cost 4200 euros [1].")  # the answer
    follow = await api.post(
        "/queries",
        json={"question": "How much did it cost?", "conversation_id": first["conversation_id"]},
        headers=account.headers,
    )
    body = follow.json()
    assert body["standalone_question"] == "How much did the harbour crane repair cost?"
    rewrite, answer = state.chat_requests[-2:]
    assert "Who repaired the crane?" in rewrite["messages"][-1]["content"]
    # The earlier turn is given to the model, and the sources were found for the rewritten question.
    assert [m["content"] for m in answer["messages"][1:3]] == ["Who repaired the crane?", first["answer"]]
    assert any("4200 euros" in s["text"] for s in body["sources"])


async def test_dates_in_the_question_become_filters(api, scripted, gateway, new_account):
    account = await new_account()
    await crane_document(gateway, account)  # uploaded today
    old = await api.post(
        "/queries", json={"question": "What did the crane repair cost in 2019?"}, headers=account.headers
    )
    body = old.json()
    assert body["standalone_question"] == "What did the crane repair cost between 2019-01-01 and 2019-12-31?"
    assert body["status"] == "no_sources" and body["sources"] == []
    today = await api.post(
        "/queries", json={"question": "What did the crane repair cost today?"}, headers=account.headers
    )
    assert today.json()["status"] == "complete" and today.json()["sources"]


async def test_no_relevant_sources_means_no_model_call(api, scripted, new_account):
    account = await new_account()
    response = await api.post(
        "/queries", json={"question": "What is my passport number?"}, headers=account.headers
    )
    body = response.json()
    assert response.status_code == 201
    assert body["status"] == "no_sources" and body["sources"] == [] and body["citations"] == []
    assert "could not find" in body["answer"]
    assert scripted.model.state.chat_requests == []


async def test_model_failing_mid_answer_keeps_the_partial_answer(api, scripted, gateway, new_account):
    account = await new_account()
    await crane_document(gateway, account)
    scripted.model.state.chat("The invoice ", "total was ", "4200 euros", " and more", break_after=3)
    _, events = await stream(api, account, {"question": "What was the invoice total?"})
    assert [e.name for e in events][-1] == "error"
    assert events[-1].data["code"] == "model_interrupted"
    query_id = events[0].data["id"]
    stored = (await api.get(f"/queries/{query_id}", headers=account.headers)).json()
    assert stored["status"] == "incomplete"
    assert stored["answer"] == "".join(e.data["text"] for e in events if e.name == "delta")
    assert stored["answer"].startswith("The invoice total was 4200 euros")


async def test_client_disconnect_stops_the_model_and_stores_incomplete(api, scripted, gateway, new_account):
    account = await new_account()
    await crane_document(gateway, account)
    scripted.model.state.chat(*[f"word{i} " for i in range(60)], delay=0.2)
    headers = {**account.headers, "Accept": "text/event-stream"}
    shown, query_id = "", None
    async with aconnect_sse(
        api, "POST", "/queries", json={"question": "What was the invoice total?"}, headers=headers
    ) as source:
        async for event in source.aiter_sse():
            data = json.loads(event.data)
            if event.event == "query":
                query_id = data["id"]
            if event.event == "delta":
                shown += data["text"]
                if shown.count("word") >= 3:
                    break
    chat = scripted.model.state.chats[-1]
    wait_for(lambda: chat.disconnected, timeout=15)
    assert not chat.finished and chat.pieces_sent < 60

    async def stored() -> dict:
        return (await api.get(f"/queries/{query_id}", headers=account.headers)).json()

    deadline = time.monotonic() + 15
    while (body := await stored())["answer"] == "" and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
    assert body["status"] == "incomplete"
    assert body["answer"].startswith(shown.rstrip())


async def test_concurrent_answers_are_limited_per_user(api, scripted, gateway, new_account):
    account, other = await new_account(), await new_account()
    await crane_document(gateway, account)
    state = scripted.model.state
    for _ in range(2):
        state.chat(*[f"w{i} " for i in range(30)], delay=0.2)
    headers = {**account.headers, "Accept": "text/event-stream"}
    async with (
        aconnect_sse(api, "POST", "/queries", json={"question": "invoice total?"}, headers=headers) as one,
        aconnect_sse(api, "POST", "/queries", json={"question": "invoice total?"}, headers=headers) as two,
    ):
        assert one.response.status_code == two.response.status_code == 200
        third = await api.post("/queries", json={"question": "invoice total?"}, headers=account.headers)
        assert third.status_code == 429, third.text
        assert int(third.headers["retry-after"]) >= 1
        assert third.json()["error"]["code"] == "too_many_answers"
        # Another user is not affected.
        elsewhere = await api.post("/queries", json={"question": "invoice total?"}, headers=other.headers)
        assert elsewhere.status_code == 201
    # The slots come back when the answers end (here: the clients left).
    deadline = time.monotonic() + 15
    while (
        again := await api.post("/queries", json={"question": "invoice total?"}, headers=account.headers)
    ).status_code == 429:
        assert time.monotonic() < deadline, "the answer slots were not given back"
        await asyncio.sleep(0.3)
    assert again.status_code == 201


async def test_users_never_see_each_others_passages_or_queries(api, scripted, gateway, new_account):
    alice, bob = await new_account("alice"), await new_account("bob")
    alice_doc = await crane_document(gateway, alice)
    bob_doc = await crane_document(gateway, bob)  # the same file
    asked = (
        await api.post("/queries", json={"question": "Who repaired the crane?"}, headers=alice.headers)
    ).json()
    assert {s["document_id"] for s in asked["sources"]} == {alice_doc["id"]}
    theirs = (
        await api.post("/queries", json={"question": "Who repaired the crane?"}, headers=bob.headers)
    ).json()
    assert {s["document_id"] for s in theirs["sources"]} == {bob_doc["id"]}

    for path in (f"/queries/{asked['id']}", f"/conversations/{asked['conversation_id']}"):
        assert (await api.get(path, headers=bob.headers)).status_code == 404
    assert (await api.delete(f"/queries/{asked['id']}", headers=bob.headers)).status_code == 404
    assert (
        await api.post(f"/queries/{asked['id']}/feedback", json={"rating": "down"}, headers=bob.headers)
    ).status_code == 404
    assert (
        await api.patch(
            f"/conversations/{asked['conversation_id']}", json={"title": "x"}, headers=bob.headers
        )
    ).status_code == 404
    follow = await api.post(
        "/queries",
        json={"question": "and then?", "conversation_id": asked["conversation_id"]},
        headers=bob.headers,
    )
    assert follow.status_code == 404 and follow.json()["error"]["code"] == "not_found"
    assert (await api.get("/queries", headers=bob.headers)).json()["total"] == 1
    # Filters cannot reach another user's document either.
    scoped = await api.post(
        "/queries",
        json={"question": "Who repaired the crane?", "document_ids": [alice_doc["id"]]},
        headers=bob.headers,
    )
    assert scoped.json()["status"] == "no_sources" and scoped.json()["sources"] == []


async def test_deleted_document_keeps_its_frozen_citation(api, scripted, gateway, new_account):
    account = await new_account()
    document = await crane_document(gateway, account)
    asked = (
        await api.post("/queries", json={"question": "Who repaired the crane?"}, headers=account.headers)
    ).json()
    assert asked["citations"] and asked["citations"][0]["available"] is True
    assert (await gateway.delete(f"/documents/{document['id']}", headers=account.headers)).status_code == 204
    later = (await api.get(f"/queries/{asked['id']}", headers=account.headers)).json()
    citation = later["citations"][0]
    assert citation["available"] is False
    assert citation["title"] == "Crane repair" and citation["quote"] == asked["citations"][0]["quote"]


async def test_bad_questions_are_refused_clearly(api, scripted, new_account):
    account = await new_account()
    for body in (
        {"question": ""},
        {"question": "   \n "},
        {"question": "x" * 10_001},
        {"question": "hi", "sources": ["web"]},
        {},
    ):
        response = await api.post("/queries", json=body, headers=account.headers)
        assert response.status_code == 422, (body, response.text)
        assert response.json()["error"]["code"]
    missing = await api.post(
        "/queries", json={"question": "hi", "conversation_id": str(uuid.uuid4())}, headers=account.headers
    )
    assert missing.status_code == 404
    assert (await api.get("/queries/not-a-uuid", headers=account.headers)).status_code == 422
    assert (await api.post("/queries", json={"question": "hi"})).status_code == 401
    long = await api.post("/queries", json={"question": "crane " * 1600}, headers=account.headers)
    assert long.status_code == 201  # 9,600 characters: imported legacy questions reach 5,000


@pytest.fixture(scope="module")
def degraded(start_service, scripted, stub_upstream) -> dict[str, str]:
    """Assistants whose model, mail or documents service cannot be reached (a closed port), or
    whose mail service is slower than the source timeout."""
    closed = f"http://127.0.0.1:{free_port()}"
    no_model, _ = start_service(
        "assistant",
        llm_backend="openai",
        llm_base_url=f"{closed}/v1",
        llm_model="gone",
        llm_max_attempts="2",
        llm_retry_base_seconds="0.05",
    )
    no_mail, _ = start_service(
        "assistant",
        llm_backend="openai",
        llm_base_url=scripted.model.base_url,
        llm_model="stub-model",
        mail_url=closed,
    )
    no_documents, _ = start_service(
        "assistant",
        llm_backend="openai",
        llm_base_url=scripted.model.base_url,
        llm_model="stub-model",
        documents_url=closed,
    )
    slow_mail, _ = start_service(
        "assistant",
        llm_backend="openai",
        llm_base_url=scripted.model.base_url,
        llm_model="stub-model",
        mail_url=stub_upstream,
        source_timeout_seconds="1",
    )
    return {"no_model": no_model, "no_mail": no_mail, "no_documents": no_documents, "slow_mail": slow_mail}


async def test_unreachable_model_gives_an_extractive_answer(degraded, gateway, new_account):
    account = await new_account()
    document = await crane_document(gateway, account)
    async with httpx.AsyncClient(base_url=degraded["no_model"], timeout=60) as client:
        response = await client.post(
            "/queries", json={"question": "Who repaired the crane?"}, headers=account.headers
        )
    body = response.json()
    assert response.status_code == 201, body
    assert body["warnings"] == ["llm_unavailable"] and body["model"] is None
    assert body["status"] == "complete"
    assert "Nordic Lifts" in body["answer"] and body["citations"]
    assert body["citations"][0]["document_id"] == document["id"] and body["citations"][0]["page"] == 1


async def test_mail_service_down_answers_from_documents(degraded, gateway, new_account):
    account = await new_account()
    document = await crane_document(gateway, account)
    async with httpx.AsyncClient(base_url=degraded["no_mail"], timeout=60) as client:
        response = await client.post(
            "/queries", json={"question": "Who repaired the crane?"}, headers=account.headers
        )
        body = response.json()
        assert body["warnings"] == ["mail_unavailable"] and body["status"] == "complete"
        assert {s["document_id"] for s in body["sources"]} == {document["id"]}
        only_mail = await client.post(
            "/queries",
            json={"question": "Who repaired the crane?", "sources": ["mail"]},
            headers=account.headers,
        )
    assert only_mail.json()["status"] == "failed"
    assert only_mail.json()["warnings"] == ["mail_unavailable"]


async def test_mail_and_attachments_are_cited(api, scripted, gateway, gmail, new_account, db):
    account = await new_account()
    address = new_address()
    gmail.add_account(address)
    gmail.add_message(
        address,
        mime_plain(
            "Boat mooring",
            "The boat mooring at pier seven is booked for the whole summer season.",
            sender="Harbour Office <office@harbour.example>",
            date=datetime(2026, 5, 2, 9, 0, tzinfo=UTC),
        ),
    )
    gmail.add_message(
        address,
        mime_with_attachment(
            [
                (
                    "quote.pdf",
                    files.pdf(["The sail repair quote from Vela Works is 950 euros."]),
                    "application/pdf",
                )
            ],
            subject="Sail quote",
            text="Quote attached.",
            date=datetime(2026, 5, 3, 9, 0, tzinfo=UTC),
        ),
    )
    account_id = await connect(gateway, account, gmail, address)
    await sync_now(gateway, account, account_id)
    await wait_indexed(db, account_id)
    scripted.model.state.chat("The boat mooring at pier seven is booked for the summer season.")
    body = (
        await api.post(
            "/queries", json={"question": "Where is the boat mooring booked?"}, headers=account.headers
        )
    ).json()
    email_citation = body["citations"][0]
    assert email_citation["kind"] == "email" and email_citation["email_id"]
    assert (
        email_citation["subject"] == "Boat mooring" and email_citation["sender"] == "office@harbour.example"
    )
    assert email_citation["available"] is True

    scripted.model.state.chat("The sail repair quote from Vela Works is 950 euros.")
    quote = (
        await api.post(
            "/queries", json={"question": "How much is the sail repair quote?"}, headers=account.headers
        )
    ).json()
    attachment = next(c for c in quote["citations"] if c["kind"] == "attachment")
    assert attachment["title"] == "quote.pdf" and attachment["page"] == 1 and attachment["attachment_id"]
    assert "950 euros" in attachment["quote"]
    documents_only = await api.post(
        "/queries",
        json={"question": "How much is the sail repair quote?", "sources": ["documents"]},
        headers=account.headers,
    )
    assert documents_only.json()["status"] == "no_sources"


async def test_purge_removes_queries_and_conversations(api, scripted, gateway, new_admin, new_account, db):
    admin, account = await new_admin(), await new_account()
    await api.post("/queries", json={"question": "anything at all?"}, headers=account.headers)
    owner = uuid.UUID(account.id)
    assert await db.fetchval("SELECT count(*) FROM assistant.queries WHERE owner_id = $1", owner) == 1
    assert (await gateway.delete(f"/admin/users/{account.id}", headers=admin.headers)).status_code == 204
    deadline = time.monotonic() + 20
    while await db.fetchval("SELECT count(*) FROM assistant.conversations WHERE owner_id = $1", owner):
        assert time.monotonic() < deadline, "the assistant worker did not purge the user"
        await asyncio.sleep(0.2)
    assert await db.fetchval("SELECT count(*) FROM assistant.queries WHERE owner_id = $1", owner) == 0
    done = await db.fetchval(
        "SELECT completed_at FROM auth.purge_requests WHERE user_id = $1 AND service = 'assistant'", owner
    )
    deadline = time.monotonic() + 20
    while done is None and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
        done = await db.fetchval(
            "SELECT completed_at FROM auth.purge_requests WHERE user_id = $1 AND service = 'assistant'", owner
        )
    assert done is not None


async def test_availability_is_unknown_while_the_documents_service_is_down(
    api, degraded, gateway, new_account
):
    account = await new_account()
    await crane_document(gateway, account)
    asked = (
        await api.post("/queries", json={"question": "Who repaired the crane?"}, headers=account.headers)
    ).json()
    assert asked["sources"] and all(s["available"] is True for s in asked["sources"])
    async with httpx.AsyncClient(base_url=degraded["no_documents"], timeout=60) as client:
        later = (await client.get(f"/queries/{asked['id']}", headers=account.headers)).json()
        assert [s["available"] for s in later["sources"]] == [None] * len(asked["sources"])
        assert later["answer"] == asked["answer"]  # the stored answer is untouched
        again = await client.post(
            "/queries", json={"question": "Who repaired the crane?"}, headers=account.headers
        )
    assert again.json()["warnings"] == ["documents_unavailable"]


async def test_heartbeat_comments_while_the_model_is_slow(api, scripted, gateway, new_account):
    account = await new_account()
    await crane_document(gateway, account)
    scripted.model.state.chat("The invoice ", "total was ", "4200 euros.", delay=1.6)  # heartbeat: 1 s here
    headers = {**account.headers, "Accept": "text/event-stream"}
    lines = []
    async with api.stream(
        "POST", "/queries", json={"question": "What was the invoice total?"}, headers=headers
    ) as response:
        async for line in response.aiter_lines():
            lines.append(line)
    pings = [line for line in lines if line.startswith(":")]
    assert pings, lines
    assert any(line == "event: done" for line in lines)


async def test_answers_are_counted_in_metrics(api, scripted, new_account):
    account = await new_account()
    await api.post("/queries", json={"question": "What is my passport number?"}, headers=account.headers)
    metrics = httpx.get(f"{scripted.assistant}/metrics", timeout=10).text
    counted = [line for line in metrics.splitlines() if line.startswith("pai_answers_total{")]
    assert any('status="no_sources"' in line and 'backend="openai"' in line for line in counted), counted
    assert "pai_answer_retrieval_seconds_count" in metrics
    assert account.id not in metrics  # no user ids in labels


async def test_a_slow_mail_service_is_left_out_after_the_source_timeout(degraded, gateway, new_account):
    account = await new_account()
    document = await crane_document(gateway, account)
    async with httpx.AsyncClient(base_url=degraded["slow_mail"], timeout=60) as client:
        response = await client.post(
            "/queries", json={"question": "Who repaired the crane?"}, headers=account.headers
        )
    body = response.json()
    assert body["warnings"] == ["mail_unavailable"] and body["status"] == "complete"
    assert {s["document_id"] for s in body["sources"]} == {document["id"]}
    assert body["timings"]["retrieval_ms"] < 4000  # the mail service takes 5 s; the timeout is 1 s
