"""Connecting Gmail through the gateway: consent with PKCE, the callback, state checks,
encrypted tokens, account listing, changes and removal."""

import uuid

from tests.gmail_stub import mime_plain
from tests.mail_support import (
    connect,
    consent_redirect,
    follow_callback,
    landing,
    new_address,
    owned_rows,
    wait_sync,
)


async def test_oauth_round_trip_connects_an_active_account(gateway, new_account, gmail, db):
    user = await new_account()
    address = new_address()
    gmail.add_message(address, mime_plain("Welcome", "First message"))
    account_id = await connect(gateway, user, gmail, address)

    run = await wait_sync(gateway, user, account_id)
    assert run["state"] == "succeeded", run
    assert run["mode"] == "full"
    listed = (await gateway.get("/mail/accounts", headers=user.headers)).json()["items"]
    assert [(a["id"], a["address"], a["status"]) for a in listed] == [(account_id, address, "active")]
    assert listed[0]["message_count"] == 1
    assert listed[0]["last_sync_at"] is not None
    assert "access_token" not in listed[0] and "refresh_token" not in listed[0]

    # Tokens are encrypted at rest, and the authorization used PKCE (S256).
    row = await db.fetchrow(
        "SELECT access_token, refresh_token FROM mail.email_accounts WHERE id = $1", uuid.UUID(account_id)
    )
    assert row["access_token"].startswith("gAAAA") and not row["access_token"].startswith("ya29.")
    assert row["refresh_token"].startswith("gAAAA")
    assert gmail.counters.code_grants[address] == 1


async def test_authorization_url_asks_for_offline_readonly_access_with_pkce(gateway, new_account):
    user = await new_account()
    response = await gateway.post("/mail/accounts/gmail/connect", headers=user.headers)
    assert response.status_code == 200
    from urllib.parse import parse_qs, urlsplit

    query = {k: v[0] for k, v in parse_qs(urlsplit(response.json()["authorization_url"]).query).items()}
    assert "https://www.googleapis.com/auth/gmail.readonly" in query["scope"].split()
    assert {"openid", "email"} <= set(query["scope"].split())
    assert query["access_type"] == "offline" and query["prompt"] == "consent"
    assert query["code_challenge_method"] == "S256" and len(query["code_challenge"]) == 43
    assert len(query["state"]) >= 43  # 32 random bytes, base64url
    assert query["redirect_uri"].endswith("/mail/oauth/callback")


async def test_replayed_state_is_refused_and_stores_nothing(gateway, new_account, gmail, db):
    user = await new_account()
    address = new_address()
    gmail.consent(address)
    consent = await consent_redirect(gateway, user)
    callback = consent.headers["location"]
    landing(await follow_callback(callback))
    replay = await follow_callback(callback)
    assert replay.status_code == 400
    assert replay.json()["error"]["code"] == "invalid_state"
    assert await db.fetchval("SELECT count(*) FROM mail.email_accounts WHERE address = $1", address) == 1


async def test_unknown_or_missing_state_is_400(gateway):
    for params in ({"code": "x", "state": "forged-state"}, {"code": "x"}, {}):
        response = await gateway.get("/mail/oauth/callback", params=params)
        assert response.status_code == 400, params
        assert response.json()["error"]["code"] == "invalid_state"


async def test_expired_state_is_refused(gateway, new_account, gmail, db):
    user = await new_account()
    address = new_address()
    gmail.consent(address)
    consent = await consent_redirect(gateway, user)
    await db.execute(
        "UPDATE mail.oauth_sessions SET expires_at = now() - interval '1 second' WHERE owner_id = $1",
        uuid.UUID(user.id),
    )
    response = await follow_callback(consent.headers["location"])
    assert response.status_code == 400
    assert await db.fetchval("SELECT count(*) FROM mail.email_accounts WHERE address = $1", address) == 0


async def test_access_denied_redirects_with_the_error_and_stores_nothing(gateway, new_account, gmail, db):
    user = await new_account()
    address = new_address()
    gmail.consent(address, deny=True)
    consent = await consent_redirect(gateway, user)
    query = landing(await follow_callback(consent.headers["location"]))
    assert query == {"mail_error": ["access_denied"]}
    assert await owned_rows(db, "email_accounts", user) == 0


async def test_reconnecting_the_same_address_updates_one_account(gateway, new_account, gmail, db):
    user = await new_account()
    address = new_address()
    first = await connect(gateway, user, gmail, address)
    await wait_sync(gateway, user, first)
    second = await connect(gateway, user, gmail, address)
    assert first == second
    assert await owned_rows(db, "email_accounts", user) == 1


async def test_patch_and_delete_account(gateway, new_account, gmail, db):
    user, other = await new_account(), await new_account()
    address = new_address()
    gmail.add_message(address, mime_plain("Keep me", "Body"))
    account_id = await connect(gateway, user, gmail, address)
    await wait_sync(gateway, user, account_id)

    response = await gateway.patch(
        f"/mail/accounts/{account_id}", json={"sync_enabled": False}, headers=user.headers
    )
    assert response.status_code == 200 and response.json()["sync_enabled"] is False
    bad = await gateway.patch(
        f"/mail/accounts/{account_id}", json={"sync_enabled": "maybe"}, headers=user.headers
    )
    assert bad.status_code == 422 and "error" in bad.json()

    # Another user sees nothing of it.
    for method, path in (
        ("PATCH", f"/mail/accounts/{account_id}"),
        ("DELETE", f"/mail/accounts/{account_id}"),
        ("POST", f"/mail/accounts/{account_id}/sync"),
        ("GET", f"/mail/accounts/{account_id}/sync"),
    ):
        response = await gateway.request(
            method, path, headers=other.headers, json={"sync_enabled": True} if method == "PATCH" else None
        )
        assert response.status_code == 404, (method, path)
    assert (await gateway.get("/mail/accounts", headers=other.headers)).json()["items"] == []

    revokes = gmail.counters.calls["revoke"]
    response = await gateway.delete(f"/mail/accounts/{account_id}", headers=user.headers)
    assert response.status_code == 204
    assert gmail.counters.calls["revoke"] == revokes + 1
    assert (await gateway.get("/mail/accounts", headers=user.headers)).json()["items"] == []
    for table in ("email_accounts", "emails", "email_attachments", "sync_runs"):
        count = await db.fetchval(
            f"SELECT count(*) FROM mail.{table} WHERE owner_id = $1", uuid.UUID(user.id)
        )
        assert count == 0, table


async def test_connect_needs_a_login(gateway):
    response = await gateway.post("/mail/accounts/gmail/connect")
    assert response.status_code == 401


async def test_consent_without_gmail_access_stores_nothing(gateway, new_account, gmail, db):
    """Google's granular consent lets the user untick Gmail and keep only their address."""
    user = await new_account()
    address = new_address()
    gmail.consent(address, scopes=["openid", "email"])
    revokes = gmail.counters.calls["revoke"]
    consent = await consent_redirect(gateway, user)
    query = landing(await follow_callback(consent.headers["location"]))
    assert query == {"mail_error": ["gmail_scope_not_granted"]}
    assert gmail.counters.calls["revoke"] == revokes + 1
    assert await owned_rows(db, "email_accounts", user) == 0
