"""Gmail sync on the real worker against the stand-in: full then incremental, expired history,
token refresh (once, however many jobs ask), revoked access, rate-limit storms."""

import asyncio
import uuid
from pathlib import Path

from redis.asyncio import Redis

from services.mail.google import Google
from services.mail.settings import MailSettings
from services.mail.tokens import AccountTokens
from shared.db import create_engine, session_factory
from tests.gmail_stub import mime_broken_boundary, mime_plain, mime_with_attachment
from tests.mail_support import connect, emails, new_address, sync_now, wait_sync


def subjects(page: dict) -> set[str]:
    return {item["subject"] for item in page["items"]}


async def test_full_then_incremental_picks_up_exactly_the_changes(gateway, new_account, gmail, db):
    user = await new_account()
    address = new_address()
    ids = {
        name: gmail.add_message(address, mime_plain(name, f"Body of {name}"))
        for name in ("one", "two", "three")
    }
    account_id = await connect(gateway, user, gmail, address)
    first = await wait_sync(gateway, user, account_id)
    assert (first["state"], first["mode"], first["processed"], first["total"]) == ("succeeded", "full", 3, 3)
    assert subjects(await emails(gateway, user)) == {"one", "two", "three"}

    gmail.add_message(address, mime_plain("four", "A new one"))
    gmail.add_message(address, mime_plain("five", "Another new one"))
    gmail.delete_message(address, ids["one"])
    gmail.modify_labels(address, ids["two"], add=["IMPORTANT"], remove=["UNREAD"])
    gmail.modify_labels(address, ids["three"], add=["TRASH"])  # trashed: out of the synced mail
    fetched_before = gmail.counters.calls["messages.get"]

    second = await sync_now(gateway, user, account_id)
    assert (second["state"], second["mode"]) == ("succeeded", "incremental"), second
    assert gmail.counters.calls["messages.get"] - fetched_before == 2  # only the new ones
    page = await emails(gateway, user)
    assert subjects(page) == {"two", "four", "five"}
    two = next(item for item in page["items"] if item["subject"] == "two")
    assert two["is_read"] is True and two["is_important"] is True and "UNREAD" not in two["labels"]
    assert page["total"] == 3
    count = await db.fetchval("SELECT count(*) FROM mail.emails WHERE account_id = $1", uuid.UUID(account_id))
    assert count == 3

    # Nothing changed: an incremental sync fetches nothing.
    fetched_before = gmail.counters.calls["messages.get"]
    third = await sync_now(gateway, user, account_id)
    assert (third["state"], third["mode"], third["total"]) == ("succeeded", "incremental", 0)
    assert gmail.counters.calls["messages.get"] == fetched_before


async def test_expired_history_falls_back_to_a_full_sync_that_prunes(gateway, new_account, gmail):
    user = await new_account()
    address = new_address()
    old = gmail.add_message(address, mime_plain("old", "will be deleted"))
    kept = gmail.add_message(address, mime_plain("kept", "stays"))
    account_id = await connect(gateway, user, gmail, address)
    await wait_sync(gateway, user, account_id)

    gmail.delete_message(address, old)
    gmail.add_message(address, mime_plain("new", "arrived later"))
    gmail.modify_labels(address, kept, remove=["UNREAD"])
    gmail.expire_history_before(gmail.history_id(address) + 1, address)

    run = await sync_now(gateway, user, account_id)
    assert (run["state"], run["mode"]) == ("succeeded", "full"), run
    page = await emails(gateway, user)
    assert subjects(page) == {"kept", "new"}
    assert next(i for i in page["items"] if i["subject"] == "kept")["is_read"] is True


async def test_a_second_sync_request_returns_the_running_one(gateway, new_account, gmail):
    user = await new_account()
    address = new_address()
    for n in range(5):
        gmail.add_message(address, mime_plain(f"slow {n}"))
    gmail.latency_seconds = 0.2
    account_id = await connect(gateway, user, gmail, address)
    first = await gateway.post(f"/mail/accounts/{account_id}/sync", headers=user.headers)
    second = await gateway.post(f"/mail/accounts/{account_id}/sync", headers=user.headers)
    assert first.status_code == second.status_code == 202
    assert first.json()["id"] == second.json()["id"]
    assert first.json()["state"] in ("queued", "running")
    gmail.latency_seconds = 0
    assert (await wait_sync(gateway, user, account_id))["state"] == "succeeded"


async def test_expired_access_token_is_refreshed_once_and_saved(gateway, new_account, gmail, db):
    user = await new_account()
    address = new_address()
    gmail.add_message(address, mime_plain("before"))
    account_id = await connect(gateway, user, gmail, address)
    await wait_sync(gateway, user, account_id)
    stored = await db.fetchval(
        "SELECT access_token FROM mail.email_accounts WHERE id = $1", uuid.UUID(account_id)
    )

    gmail.expire_access_tokens()  # Google now answers 401 to the token we hold
    gmail.add_message(address, mime_plain("after"))
    refreshes = gmail.counters.refresh_grants[address]
    run = await sync_now(gateway, user, account_id)
    assert run["state"] == "succeeded", run
    assert gmail.counters.refresh_grants[address] == refreshes + 1
    assert subjects(await emails(gateway, user)) == {"before", "after"}
    fresh = await db.fetchval(
        "SELECT access_token FROM mail.email_accounts WHERE id = $1", uuid.UUID(account_id)
    )
    assert fresh != stored and fresh.startswith("gAAAA")


async def test_a_token_about_to_expire_is_refreshed_before_use(gateway, new_account, gmail, db):
    user = await new_account()
    address = new_address()
    account_id = await connect(gateway, user, gmail, address)
    await wait_sync(gateway, user, account_id)
    await db.execute(
        "UPDATE mail.email_accounts SET token_expires_at = now() - interval '1 second' WHERE id = $1",
        uuid.UUID(account_id),
    )
    refreshes, refused = gmail.counters.refresh_grants[address], gmail.counters.statuses[401]
    assert (await sync_now(gateway, user, account_id))["state"] == "succeeded"
    assert gmail.counters.refresh_grants[address] == refreshes + 1
    assert gmail.counters.statuses[401] == refused  # refreshed first, never refused
    expires = await db.fetchval(
        "SELECT token_expires_at > now() + interval '30 minutes' FROM mail.email_accounts WHERE id = $1",
        uuid.UUID(account_id),
    )
    assert expires


async def test_a_sync_and_a_download_refused_together_refresh_once(gateway, new_account, gmail):
    """The worker's sync and the API's attachment download both hold the refused token."""
    user = await new_account()
    address = new_address()
    image = b"\x89PNG\r\n\x1a\n" + b"\x01" * 32
    gmail.add_message(address, mime_with_attachment([("pixel.png", image, "image/png")], subject="pixel"))
    account_id = await connect(gateway, user, gmail, address)
    first = await wait_sync(gateway, user, account_id)
    item = (await emails(gateway, user))["items"][0]
    detail = (await gateway.get(f"/mail/emails/{item['id']}", headers=user.headers)).json()
    attachment = detail["attachments"][0]
    for n in range(5):
        gmail.add_message(address, mime_plain(f"later {n}"))

    gmail.expire_access_tokens()
    gmail.latency_seconds = 1.0  # both are still waiting for Gmail's 401 when the other starts
    refreshes = gmail.counters.refresh_grants[address]
    started, download = await asyncio.gather(
        gateway.post(f"/mail/accounts/{account_id}/sync", headers=user.headers),
        gateway.get(f"/mail/emails/{item['id']}/attachments/{attachment['id']}", headers=user.headers),
    )
    assert started.status_code == 202 and download.status_code == 200 and download.content == image
    gmail.latency_seconds = 0.0
    assert (await wait_sync(gateway, user, account_id, after=first["id"]))["state"] == "succeeded"
    assert gmail.counters.refresh_grants[address] == refreshes + 1


async def test_concurrent_jobs_refresh_the_token_once(gateway, new_account, gmail, stack, redis_url):
    """Two jobs holding the same refused token ask for a new one at once: one refresh."""
    user = await new_account()
    address = new_address()
    account_id = await connect(gateway, user, gmail, address)
    await wait_sync(gateway, user, account_id)

    settings = MailSettings(_env_file=None, **_mail_env(stack.env))
    engine = create_engine(settings.service_database_url, pool_size=4)
    redis = Redis.from_url(redis_url)
    try:
        tokens = AccountTokens(session_factory(engine), redis, settings.token_cipher(), Google(settings))
        owner, account = uuid.UUID(user.id), uuid.UUID(account_id)
        refused = await tokens.access_token(owner, account)
        gmail.expire_access_tokens()
        refreshes = gmail.counters.refresh_grants[address]
        first, second = await asyncio.gather(*(tokens.refresh(owner, account, refused) for _ in range(2)))
        assert first == second != refused
        assert gmail.counters.refresh_grants[address] == refreshes + 1
    finally:
        await redis.aclose()
        await engine.dispose()


def _mail_env(env: dict[str, str]) -> dict:
    """The stack's mail settings as MailSettings field values."""
    names = {
        "PAI_DATABASE_URL": "database_url",
        "PAI_MAIL_TOKEN_KEYS": "mail_token_keys",
        "PAI_GOOGLE_CLIENT_ID": "google_client_id",
        "PAI_GOOGLE_CLIENT_SECRET": "google_client_secret",
        "PAI_GOOGLE_TOKEN_URL": "google_token_url",
        "PAI_GOOGLE_AUTH_URL": "google_auth_url",
        "PAI_GOOGLE_REVOKE_URL": "google_revoke_url",
        "PAI_GOOGLE_USERINFO_URL": "google_userinfo_url",
        "PAI_GMAIL_DISCOVERY_URL": "gmail_discovery_url",
    }
    return {field: env[name] for name, field in names.items()} | {"data_dir": Path(env["PAI_DATA_DIR"])}


async def test_revoked_access_marks_the_account_needs_reauth(gateway, new_account, gmail):
    user = await new_account()
    address = new_address()
    account_id = await connect(gateway, user, gmail, address)
    await wait_sync(gateway, user, account_id)

    gmail.revoke_refresh_tokens(address)  # the user removed our access in their Google account
    run = await sync_now(gateway, user, account_id)
    assert run["state"] == "failed" and "connect the account again" in run["error"]
    account = (await gateway.get("/mail/accounts", headers=user.headers)).json()["items"][0]
    assert account["status"] == "needs_reauth" and account["last_error"]
    response = await gateway.post(f"/mail/accounts/{account_id}/sync", headers=user.headers)
    assert response.status_code == 409 and response.json()["error"]["code"] == "needs_reauth"

    # Connecting again brings it back.
    await connect(gateway, user, gmail, address)
    account = (await gateway.get("/mail/accounts", headers=user.headers)).json()["items"][0]
    assert account["status"] in ("active", "syncing")
    assert (await wait_sync(gateway, user, account_id, after=run["id"]))["state"] == "succeeded"


async def test_rate_limit_storm_completes_without_duplicates(gateway, new_account, gmail, db):
    user = await new_account()
    address = new_address()
    for n in range(40):
        gmail.add_message(address, mime_plain(f"storm {n}", f"message number {n}"))
    gmail.quota_units_per_second = 100  # well below what the client paces at
    gmail.fail_next(4, 429, retry_after=0)
    gmail.fail_next(2, 503)
    limited = gmail.counters.rate_limited
    account_id = await connect(gateway, user, gmail, address)
    run = await wait_sync(gateway, user, account_id, timeout=120)
    assert run["state"] == "succeeded", run
    assert gmail.counters.rate_limited - limited >= 4
    rows = await db.fetch("SELECT gmail_id FROM mail.emails WHERE account_id = $1", uuid.UUID(account_id))
    assert len(rows) == 40 == len({r["gmail_id"] for r in rows})


async def test_persistent_failure_is_recorded_on_the_run_and_account(gateway, new_account, gmail):
    user = await new_account()
    address = new_address()
    gmail.add_message(address, mime_plain("unreachable"))
    gmail.fail_next(100, 500)
    account_id = await connect(gateway, user, gmail, address)
    run = await wait_sync(gateway, user, account_id, timeout=120)
    with gmail.lock:
        gmail._faults.clear()
    assert run["state"] == "failed" and "500" in run["error"]
    account = (await gateway.get("/mail/accounts", headers=user.headers)).json()["items"][0]
    assert account["status"] == "error" and account["last_error"]
    # The next sync recovers.
    assert (await sync_now(gateway, user, account_id))["state"] == "succeeded"
    assert subjects(await emails(gateway, user)) == {"unreachable"}


async def test_a_malformed_message_is_stored_with_a_flag(gateway, new_account, gmail):
    user = await new_account()
    address = new_address()
    gmail.add_message(address, mime_broken_boundary())
    gmail.add_message(address, mime_plain("fine"))
    account_id = await connect(gateway, user, gmail, address)
    assert (await wait_sync(gateway, user, account_id))["state"] == "succeeded"
    page = await emails(gateway, user)
    assert page["total"] == 2
    details = [
        (await gateway.get(f"/mail/emails/{i['id']}", headers=user.headers)).json() for i in page["items"]
    ]
    assert sorted(d["is_malformed"] for d in details) == [False, True]


async def test_disabled_accounts_are_not_scheduled(gateway, new_account, gmail, db):
    user = await new_account()
    address = new_address()
    account_id = await connect(gateway, user, gmail, address)
    await wait_sync(gateway, user, account_id)
    await gateway.patch(f"/mail/accounts/{account_id}", json={"sync_enabled": False}, headers=user.headers)
    await db.execute(
        "UPDATE mail.email_accounts SET last_sync_at = now() - interval '1 day' WHERE id = $1",
        uuid.UUID(account_id),
    )
    due = await db.fetch("SELECT account_id FROM mail.accounts_due_for_sync(900)")
    assert uuid.UUID(account_id) not in {r["account_id"] for r in due}
    await gateway.patch(f"/mail/accounts/{account_id}", json={"sync_enabled": True}, headers=user.headers)
    due = await db.fetch("SELECT account_id FROM mail.accounts_due_for_sync(900)")
    assert uuid.UUID(account_id) in {r["account_id"] for r in due}
