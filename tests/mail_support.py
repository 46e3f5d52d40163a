"""Helpers of the mail tests: connect a Gmail account through the gateway as a browser would,
and wait for syncs and embedding to finish."""

import asyncio
import time
import uuid
from urllib.parse import parse_qs, urlsplit

import httpx

from tests.conftest import FRONTEND_URL, Account
from tests.gmail_stub import GmailStub


def new_address(prefix: str = "box") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}@gmail.test"


async def consent_redirect(gateway: httpx.AsyncClient, account: Account) -> httpx.Response:
    """connect → Google's consent screen (the stand-in answers at once) → the callback URL."""
    response = await gateway.post("/mail/accounts/gmail/connect", headers=account.headers)
    assert response.status_code == 200, response.text
    async with httpx.AsyncClient(timeout=30) as browser:
        consent = await browser.get(response.json()["authorization_url"])
    assert consent.status_code == 302, consent.text
    return consent


async def follow_callback(callback_url: str) -> httpx.Response:
    async with httpx.AsyncClient(timeout=30) as browser:
        return await browser.get(callback_url)


def landing(response: httpx.Response) -> dict[str, list[str]]:
    """The front-end redirect's query, after checking it goes to the front end."""
    assert response.status_code == 302, response.text
    location = response.headers["location"]
    assert location.startswith(FRONTEND_URL), location
    return parse_qs(urlsplit(location).query)


async def connect(gateway: httpx.AsyncClient, account: Account, stub: GmailStub, address: str) -> str:
    """The whole consent round trip; returns the new mail account's id."""
    stub.consent(address)
    consent = await consent_redirect(gateway, account)
    query = landing(await follow_callback(consent.headers["location"]))
    assert query.get("mail_connected") == [address], query
    return query["account_id"][0]


async def wait_sync(
    gateway: httpx.AsyncClient,
    account: Account,
    account_id: str,
    *,
    after: str | None = None,
    timeout: float = 60,
) -> dict:
    """The account's latest sync once it has finished (and is not the run ``after``)."""
    deadline = time.monotonic() + timeout
    while True:
        response = await gateway.get(f"/mail/accounts/{account_id}/sync", headers=account.headers)
        if response.status_code == 200:
            run = response.json()
            if run["state"] in ("succeeded", "failed") and run["id"] != after:
                return run
        assert time.monotonic() < deadline, f"sync did not finish: {response.text}"
        await asyncio.sleep(0.1)


async def sync_now(gateway: httpx.AsyncClient, account: Account, account_id: str) -> dict:
    response = await gateway.post(f"/mail/accounts/{account_id}/sync", headers=account.headers)
    assert response.status_code == 202, response.text
    return await wait_sync(gateway, account, account_id)


async def emails(gateway: httpx.AsyncClient, account: Account, **params) -> dict:
    response = await gateway.get("/mail/emails", params={"limit": 200, **params}, headers=account.headers)
    assert response.status_code == 200, response.text
    return response.json()


async def wait_indexed(db, account_id: str, timeout: float = 60) -> None:
    """Until every stored email of the account is embedded."""
    deadline = time.monotonic() + timeout
    while await db.fetchval(
        "SELECT count(*) FROM mail.emails WHERE account_id = $1 AND indexed_at IS NULL", uuid.UUID(account_id)
    ):
        assert time.monotonic() < deadline, "emails were not embedded in time"
        await asyncio.sleep(0.1)


async def owned_rows(db, table: str, account: Account) -> int:
    """How many rows of ``mail.<table>`` belong to the user (read as admin, past RLS)."""
    return await db.fetchval(f"SELECT count(*) FROM mail.{table} WHERE owner_id = $1", uuid.UUID(account.id))
