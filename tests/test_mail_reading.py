"""Reading and searching synced mail: filters, details, attachments, semantic search, and
strict isolation between users, down to the vector store; account removal and purge."""

import asyncio
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import pytest
from sqlalchemy.engine import make_url

from shared.embeddings import EmbeddingSettings, create_embedder
from shared.vectors import EMAIL_CHUNKS, create_vector_store
from tests import files
from tests.gmail_stub import mime_alternative, mime_plain, mime_with_attachment
from tests.mail_support import connect, emails, new_address, owned_rows, wait_indexed, wait_sync

PDF = "application/pdf"


@pytest.fixture(scope="module")
def vectors(stack):
    """The embedded store the mail worker writes, opened from the test process."""
    embedder = create_embedder(EmbeddingSettings())
    return create_vector_store(
        data_dir=Path(stack.env["PAI_DATA_DIR"]), model=embedder.model_name, dimension=embedder.dimension
    )


def fill(gmail, address: str) -> dict[str, str]:
    """A small realistic mailbox; returns Gmail ids by name."""
    return {
        "invoice": gmail.add_message(
            address,
            mime_with_attachment(
                [("invoice-2041.pdf", files.pdf(["Invoice 2041 for the harbour crane repair"]), PDF)],
                subject="Your invoice 2041",
                text="Your invoice is attached. Payment is due in 30 days.",
                sender="Billing <billing@cranes.example>",
                date=datetime(2026, 3, 1, 9, 0, tzinfo=UTC),
            ),
            label_ids=["INBOX", "CATEGORY_UPDATES"],
        ),
        "trip": gmail.add_message(
            address,
            mime_plain(
                "Hiking this weekend?",
                "Shall we walk up the mountain trail on Saturday? Bring boots and water.",
                sender="Maria <maria@gmail.com>",
                date=datetime(2026, 3, 5, 18, 0, tzinfo=UTC),
            ),
            label_ids=["INBOX"],  # read
        ),
        "sale": gmail.add_message(
            address,
            mime_alternative(
                "Spring sale: 40% off",
                "Everything in the shop is 40% off this week only.",
                sender="Shop News <news@shop.example>",
                date=datetime(2026, 3, 7, 7, 30, tzinfo=UTC),
            ),
            label_ids=["INBOX", "UNREAD", "CATEGORY_PROMOTIONS"],
        ),
    }


async def synced_user(gateway, new_account, gmail, db, address=None):
    user = await new_account()
    address = address or new_address()
    if address not in gmail.mailboxes:
        fill(gmail, address)
    account_id = await connect(gateway, user, gmail, address)
    assert (await wait_sync(gateway, user, account_id))["state"] == "succeeded"
    await wait_indexed(db, account_id)
    return user, account_id


async def test_list_filters_and_details(gateway, new_account, gmail, db):
    user, account_id = await synced_user(gateway, new_account, gmail, db)
    page = await emails(gateway, user)
    assert [i["subject"] for i in page["items"]] == [
        "Spring sale: 40% off",
        "Hiking this weekend?",
        "Your invoice 2041",
    ]
    assert page["total"] == 3

    async def subjects(**params) -> list[str]:
        return [i["subject"] for i in (await emails(gateway, user, **params))["items"]]

    assert await subjects(type="promotional") == ["Spring sale: 40% off"]
    assert await subjects(type="transactional") == ["Your invoice 2041"]
    assert await subjects(sender="maria") == ["Hiking this weekend?"]
    assert await subjects(is_read="false") == ["Spring sale: 40% off"]
    assert await subjects(label="CATEGORY_PROMOTIONS") == ["Spring sale: 40% off"]
    assert await subjects(q="boots") == ["Hiking this weekend?"]
    assert await subjects(after="2026-03-04T00:00:00Z", before="2026-03-06T00:00:00Z") == [
        "Hiking this weekend?"
    ]
    assert await subjects(account_id=account_id, limit=1, offset=1) == ["Hiking this weekend?"]
    bad = await gateway.get("/mail/emails", params={"type": "spam", "limit": 0}, headers=user.headers)
    assert bad.status_code == 422 and bad.json()["error"]["code"]

    invoice = next(i for i in page["items"] if i["subject"] == "Your invoice 2041")
    assert invoice["has_attachments"] is True
    detail = (await gateway.get(f"/mail/emails/{invoice['id']}", headers=user.headers)).json()
    assert detail["sender_address"] == "billing@cranes.example" and detail["sender_name"] == "Billing"
    assert detail["to"][0]["email"] == "alice@example.com"
    assert detail["sent_at"].startswith("2026-03-01T09:00:00")
    assert "Payment is due" in detail["body_text"]
    assert [(a["filename"], a["mime_type"]) for a in detail["attachments"]] == [("invoice-2041.pdf", PDF)]

    response = await gateway.get(
        f"/mail/emails/{invoice['id']}/attachments/{detail['attachments'][0]['id']}", headers=user.headers
    )
    assert response.status_code == 200
    assert response.headers["content-type"] == PDF
    assert response.content.startswith(b"%PDF")
    assert "invoice-2041.pdf" in response.headers["content-disposition"]


async def test_attachment_not_kept_at_sync_is_fetched_from_gmail_on_first_request(
    gateway, new_account, gmail, db
):
    user = await new_account()
    address = new_address()
    image = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64
    gmail.add_message(address, mime_with_attachment([("photo.png", image, "image/png")], subject="A photo"))
    account_id = await connect(gateway, user, gmail, address)
    await wait_sync(gateway, user, account_id)
    item = (await emails(gateway, user))["items"][0]
    attachment = (await gateway.get(f"/mail/emails/{item['id']}", headers=user.headers)).json()[
        "attachments"
    ][0]
    url = f"/mail/emails/{item['id']}/attachments/{attachment['id']}"

    gets = gmail.counters.calls["messages.get"]
    first = await gateway.get(url, headers=user.headers)
    assert first.status_code == 200 and first.content == image
    assert gmail.counters.calls["messages.get"] == gets + 1
    second = await gateway.get(url, headers=user.headers)  # kept under the user's directory
    assert second.content == image and gmail.counters.calls["messages.get"] == gets + 1


async def test_semantic_search_finds_bodies_and_attachments(gateway, new_account, gmail, db):
    user, _ = await synced_user(gateway, new_account, gmail, db)

    async def search(q: str, **params) -> list[dict]:
        response = await gateway.get("/mail/search", params={"q": q, **params}, headers=user.headers)
        assert response.status_code == 200, response.text
        return response.json()["results"]

    top = (await search("walking in the mountains at the weekend", k=1))[0]
    assert top["subject"] == "Hiking this weekend?" and top["sender"] == "maria@gmail.com"
    assert set(top) >= {"kind", "email_id", "subject", "sender", "sent_at", "text", "score", "start", "end"}
    assert top["kind"] == "email" and top["text"] and not top["text"].startswith("Subject:")

    crane = await search("harbour crane repair")
    assert crane[0]["subject"] == "Your invoice 2041"
    assert crane[0]["attachment_id"] is not None  # found in the PDF, not the body
    assert crane[0]["kind"] == "attachment" and crane[0]["title"] and crane[0]["page"] == 1

    assert [r["subject"] for r in await search("discount", type="promotional")] == ["Spring sale: 40% off"]
    assert len({r["email_id"] for r in await search("invoice", k=10)}) == len(await search("invoice", k=10))


async def test_two_users_with_the_same_mailbox_never_see_each_other(gateway, new_account, gmail, db, vectors):
    address = new_address("shared")
    fill(gmail, address)
    alice, alice_account = await synced_user(gateway, new_account, gmail, db, address)
    bob, bob_account = await synced_user(gateway, new_account, gmail, db, address)
    assert alice_account != bob_account

    alice_items = (await emails(gateway, alice))["items"]
    bob_items = (await emails(gateway, bob))["items"]
    assert len(alice_items) == len(bob_items) == 3  # stored once per user
    assert not {i["id"] for i in alice_items} & {i["id"] for i in bob_items}
    gmail_ids = await db.fetch(
        "SELECT account_id, count(*) AS n FROM mail.emails WHERE account_id = ANY($1) GROUP BY account_id",
        [uuid.UUID(alice_account), uuid.UUID(bob_account)],
    )
    assert sorted(r["n"] for r in gmail_ids) == [3, 3]

    invoice = next(i for i in alice_items if i["has_attachments"])
    detail = (await gateway.get(f"/mail/emails/{invoice['id']}", headers=alice.headers)).json()
    for path in (
        f"/mail/emails/{invoice['id']}",
        f"/mail/emails/{invoice['id']}/attachments/{detail['attachments'][0]['id']}",
        f"/mail/accounts/{alice_account}/sync",
    ):
        response = await gateway.get(path, headers=bob.headers)
        assert response.status_code == 404, path
        assert response.json()["error"]["code"] == "not_found"
    assert (await emails(gateway, bob, account_id=alice_account))["total"] == 0

    bob_ids = {i["id"] for i in bob_items}
    results = (
        await gateway.get("/mail/search", params={"q": "invoice crane", "k": 10}, headers=bob.headers)
    ).json()
    assert results["results"] and {r["email_id"] for r in results["results"]} <= bob_ids
    filtered = await gateway.get(
        "/mail/search", params={"q": "invoice", "account_id": alice_account}, headers=bob.headers
    )
    assert filtered.json()["results"] == []
    # Each user's vectors live in their own tenant.
    assert await vectors.count(uuid.UUID(alice.id), EMAIL_CHUNKS, {"account_id": bob_account}) == 0
    assert await vectors.count(uuid.UUID(bob.id), EMAIL_CHUNKS, {"account_id": bob_account}) > 0


async def test_account_delete_leaves_no_rows_files_or_vectors(
    gateway, new_account, gmail, db, vectors, stack
):
    user, account_id = await synced_user(gateway, new_account, gmail, db)
    owner = uuid.UUID(user.id)
    assert await vectors.count(owner, EMAIL_CHUNKS, {"account_id": account_id}) > 0
    user_dir = Path(stack.env["PAI_DATA_DIR"]) / "mail" / user.id
    assert any(user_dir.rglob("part-*"))  # the PDF kept for indexing

    response = await gateway.delete(f"/mail/accounts/{account_id}", headers=user.headers)
    assert response.status_code == 204
    for table in ("email_accounts", "emails", "email_attachments", "sync_runs"):
        assert await owned_rows(db, table, user) == 0, table
    assert await vectors.count(owner, EMAIL_CHUNKS) == 0
    assert not any(user_dir.rglob("part-*"))
    again = await gateway.delete(f"/mail/accounts/{account_id}", headers=user.headers)
    assert again.status_code == 404


async def test_deleting_the_user_purges_their_mail(gateway, new_account, new_admin, gmail, db, vectors):
    user, _ = await synced_user(gateway, new_account, gmail, db)
    owner = uuid.UUID(user.id)
    admin = await new_admin()
    response = await gateway.delete(f"/admin/users/{user.id}", headers=admin.headers)
    assert response.status_code in (202, 204), response.text

    deadline = time.monotonic() + 60
    while await db.fetchval("SELECT count(*) FROM mail.email_accounts WHERE owner_id = $1", owner):
        assert time.monotonic() < deadline, "mail was not purged"
        await asyncio.sleep(0.2)
    assert await db.fetchval("SELECT count(*) FROM mail.emails WHERE owner_id = $1", owner) == 0
    assert await vectors.count(owner, EMAIL_CHUNKS) == 0


async def test_row_level_security_hides_every_mail_table_without_the_user_context(
    gateway, new_account, gmail, db, database_url
):
    user, _ = await synced_user(gateway, new_account, gmail, db)
    role_url = make_url(database_url).set(username="pai_mail").render_as_string(hide_password=False)
    conn = await asyncpg.connect(role_url)
    try:
        for table in ("email_accounts", "emails", "email_attachments", "sync_runs", "oauth_sessions"):
            assert await conn.fetchval(f"SELECT count(*) FROM mail.{table}") == 0, table
        async with conn.transaction():
            await conn.execute("SELECT set_config('app.user_id', $1, true)", user.id)
            assert await conn.fetchval("SELECT count(*) FROM mail.emails") == 3
            with pytest.raises(asyncpg.InsufficientPrivilegeError):  # WITH CHECK: no writing as another
                await conn.execute("UPDATE mail.emails SET owner_id = $1", uuid.uuid4())
        # The definer-rights helpers are the service's only way past the policies.
        assert await conn.fetchval("SELECT count(*) FROM mail.claim_oauth_session('no such state')") == 0
    finally:
        await conn.close()


async def test_an_account_whose_token_cannot_be_decrypted_can_be_listed_and_disconnected(
    gateway, new_account, db
):
    """Token keys lost or rotated away: the account is still shown and can be removed (no 500)."""
    user = await new_account("lostkey")
    account_id = uuid.uuid4()
    await db.execute(
        "INSERT INTO mail.email_accounts (id, owner_id, provider, address, status, sync_enabled, "
        "access_token, refresh_token, token_expires_at, scopes, created_at, updated_at) "
        "VALUES ($1, $2, 'gmail', 'lost@example.com', 'active', true, 'not-a-fernet-token', "
        "'neither-is-this', now(), '', now(), now())",
        account_id,
        uuid.UUID(user.id),
    )
    listed = await gateway.get("/mail/accounts", headers=user.headers)
    assert listed.status_code == 200 and [a["id"] for a in listed.json()["items"]] == [str(account_id)]
    deleted = await gateway.delete(f"/mail/accounts/{account_id}", headers=user.headers)
    assert deleted.status_code == 204, deleted.text
    assert await db.fetchval("SELECT count(*) FROM mail.email_accounts WHERE id = $1", account_id) == 0
