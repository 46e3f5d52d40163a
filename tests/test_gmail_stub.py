"""The Gmail stand-in behaves like Gmail and Google OAuth on the wire, checked with plain httpx calls.

Mail sync is tested against tests/gmail_stub.py, so its shapes, status codes and faults must be right;
these tests pin them down."""

import base64
import hashlib
import json
import secrets
import time
from collections.abc import Iterator
from email import message_from_bytes
from email import policy as email_policy
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from tests.gmail_stub import (
    GMAIL_METADATA,
    GMAIL_READONLY,
    GmailStub,
    mime_alternative,
    mime_broken_boundary,
    mime_encoded_headers,
    mime_html_only,
    mime_legacy_charset,
    mime_missing_headers,
    mime_plain,
    mime_with_attachment,
    sample_pdf,
)

ALICE = "alice@example.com"
REDIRECT = "https://app.example.com/oauth/google/callback"
SCOPES = f"openid email {GMAIL_READONLY}"


@pytest.fixture(scope="module")
def server() -> Iterator[GmailStub]:
    with GmailStub() as stub:
        yield stub


@pytest.fixture
def stub(server: GmailStub) -> GmailStub:
    server.reset()
    return server


@pytest.fixture
def http(stub: GmailStub) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=stub.base_url, timeout=5) as client:
        yield client


def pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge


def authorize(http: httpx.Client, challenge: str, **overrides: str) -> httpx.Response:
    params = {
        "client_id": "stub-client.apps.googleusercontent.com",
        "redirect_uri": REDIRECT,
        "response_type": "code",
        "scope": SCOPES,
        "state": "st-123",
        "access_type": "offline",
        "prompt": "consent",
        "code_challenge": challenge,
        "code_challenge_method": "S256",
    } | overrides
    return http.get("/o/oauth2/v2/auth", params={k: v for k, v in params.items() if v is not None})


def redirect_params(response: httpx.Response) -> dict[str, str]:
    assert response.status_code == 302
    location = response.headers["location"]
    assert location.startswith(REDIRECT + "?")
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


def exchange(http: httpx.Client, stub: GmailStub, code: str, verifier: str | None) -> httpx.Response:
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": REDIRECT,
        "client_id": stub.client_id,
        "client_secret": stub.client_secret,
    }
    if verifier is not None:
        form["code_verifier"] = verifier
    return http.post("/token", data=form)


def refresh(http: httpx.Client, stub: GmailStub, refresh_token: str) -> httpx.Response:
    form = {"grant_type": "refresh_token", "refresh_token": refresh_token}
    return http.post("/token", data=form | {"client_id": stub.client_id, "client_secret": stub.client_secret})


def gmail(http: httpx.Client, token: str | None, path: str, **params: Any) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return http.get(f"/gmail/v1/users/me/{path}", params=params, headers=headers)


def signed_in(stub: GmailStub, scopes: tuple[str, ...] = (GMAIL_READONLY,)) -> str:
    return stub.issue_tokens(ALICE, scopes)["access_token"]


def assert_google_error(response: httpx.Response, code: int, status: str, reason: str | None = None) -> None:
    assert response.status_code == code
    error = response.json()["error"]
    assert (error["code"], error["status"]) == (code, status)
    assert error["message"]
    if reason:
        assert error["errors"][0]["reason"] == reason


def unb64(data: str) -> bytes:
    return base64.urlsafe_b64decode(data)


# ---------------------------------------------------------------- OAuth


def test_code_flow_with_pkce_gives_tokens_that_work(http: httpx.Client, stub: GmailStub) -> None:
    stub.consent(ALICE)
    verifier, challenge = pkce()
    params = redirect_params(authorize(http, challenge))
    assert params["state"] == "st-123"
    assert params["scope"].split() == [
        "openid",
        "https://www.googleapis.com/auth/userinfo.email",
        GMAIL_READONLY,
    ]

    response = exchange(http, stub, params["code"], verifier)
    assert response.status_code == 200, response.text
    tokens = response.json()
    assert tokens["token_type"] == "Bearer"
    assert tokens["expires_in"] == 3599
    assert tokens["scope"] == params["scope"]
    assert tokens["refresh_token"].startswith("1//")
    _, claims, _ = tokens["id_token"].split(".")
    claims = json.loads(base64.urlsafe_b64decode(claims + "=" * (-len(claims) % 4)))
    assert (claims["aud"], claims["email"], claims["iss"]) == (
        stub.client_id,
        ALICE,
        "https://accounts.google.com",
    )

    info = http.get("/oauth2/v3/userinfo", headers={"Authorization": f"Bearer {tokens['access_token']}"})
    assert info.status_code == 200
    assert info.json() == {"sub": claims["sub"], "email": ALICE, "email_verified": True}
    assert gmail(http, tokens["access_token"], "profile").json()["emailAddress"] == ALICE
    assert stub.counters.code_grants[ALICE] == 1

    reused = exchange(http, stub, params["code"], verifier)
    assert reused.status_code == 400
    assert reused.json()["error"] == "invalid_grant"
    assert reused.json()["error_description"]


def test_pkce_verifier_must_match_the_challenge(http: httpx.Client, stub: GmailStub) -> None:
    verifier, challenge = pkce()
    code = redirect_params(authorize(http, challenge))["code"]
    for wrong in (pkce()[0], None):
        response = exchange(http, stub, code, wrong)
        assert response.status_code == 400
        assert response.json()["error"] == "invalid_grant"
    assert exchange(http, stub, code, verifier).status_code == 200  # failed attempts don't burn the code


def test_consent_refused_redirects_with_access_denied(http: httpx.Client, stub: GmailStub) -> None:
    stub.consent(ALICE, deny=True)
    params = redirect_params(authorize(http, pkce()[1]))
    assert params == {"error": "access_denied", "state": "st-123"}


def test_user_may_grant_fewer_scopes_and_online_access_has_no_refresh_token(
    http: httpx.Client, stub: GmailStub
) -> None:
    stub.consent(ALICE, scopes=["openid"])
    verifier, challenge = pkce()
    code = redirect_params(authorize(http, challenge, access_type="online"))["code"]
    tokens = exchange(http, stub, code, verifier).json()
    assert tokens["scope"] == "openid"
    assert "refresh_token" not in tokens
    info = http.get("/oauth2/v3/userinfo", headers={"Authorization": f"Bearer {tokens['access_token']}"})
    assert "email" not in info.json()  # no email scope, no email
    response = gmail(http, tokens["access_token"], "profile")
    assert_google_error(response, 403, "PERMISSION_DENIED", "insufficientPermissions")


def test_authorize_validates_its_parameters(http: httpx.Client, stub: GmailStub) -> None:
    challenge = pkce()[1]
    for overrides in ({"scope": None}, {"redirect_uri": None}, {"code_challenge_method": "S512"}):
        response = authorize(http, challenge, **overrides)
        assert response.status_code == 400, overrides
        assert response.json()["error"] == "invalid_request"
    assert authorize(http, challenge, client_id="someone-else").status_code == 401
    stub.redirect_uris = {"https://other.example.com/cb"}
    assert authorize(http, challenge).json()["error"] == "redirect_uri_mismatch"


def test_token_endpoint_checks_client_and_redirect_uri(http: httpx.Client, stub: GmailStub) -> None:
    verifier, challenge = pkce()
    code = redirect_params(authorize(http, challenge))["code"]
    bad_secret = http.post(
        "/token",
        data={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": REDIRECT,
            "code_verifier": verifier,
        },
        auth=(stub.client_id, "wrong"),
    )
    assert (bad_secret.status_code, bad_secret.json()["error"]) == (401, "invalid_client")
    wrong_uri = http.post(
        "/token",
        data={"grant_type": "authorization_code", "code": code, "redirect_uri": "https://evil.example/cb"},
        auth=(stub.client_id, stub.client_secret),  # HTTP Basic client authentication works too
    )
    assert (wrong_uri.status_code, wrong_uri.json()["error"]) == (400, "redirect_uri_mismatch")
    unknown = http.post("/token", data={"grant_type": "password"}, auth=(stub.client_id, stub.client_secret))
    assert unknown.json()["error"] == "unsupported_grant_type"


def test_refresh_grant_gives_a_new_access_token_and_keeps_the_refresh_token(
    http: httpx.Client, stub: GmailStub
) -> None:
    tokens = stub.issue_tokens(ALICE, [GMAIL_READONLY])
    response = refresh(http, stub, tokens["refresh_token"])
    assert response.status_code == 200
    fresh = response.json()
    assert fresh["access_token"] != tokens["access_token"]
    assert "refresh_token" not in fresh
    assert (fresh["token_type"], fresh["scope"]) == ("Bearer", GMAIL_READONLY)
    assert gmail(http, fresh["access_token"], "profile").status_code == 200
    assert stub.counters.refresh_grants == {ALICE: 1}
    assert refresh(http, stub, tokens["refresh_token"]).status_code == 200  # reusable
    assert stub.counters.refresh_grants[ALICE] == 2


def test_revocation_kills_the_refresh_token_and_its_access_tokens(
    http: httpx.Client, stub: GmailStub
) -> None:
    tokens = stub.issue_tokens(ALICE)
    assert http.post("/revoke", params={"token": tokens["refresh_token"]}).status_code == 200
    denied = refresh(http, stub, tokens["refresh_token"])
    assert denied.status_code == 400
    assert denied.json() == {
        "error": "invalid_grant",
        "error_description": "Token has been expired or revoked.",
    }
    assert gmail(http, tokens["access_token"], "profile").status_code == 401
    again = http.post("/revoke", data={"token": tokens["refresh_token"]})
    assert (again.status_code, again.json()["error"]) == (400, "invalid_token")
    assert stub.counters.refresh_grants[ALICE] == 0

    other = stub.issue_tokens(ALICE)
    assert (
        http.post("/revoke", data={"token": other["access_token"]}).status_code == 200
    )  # form, access token
    assert refresh(http, stub, other["refresh_token"]).json()["error"] == "invalid_grant"


def test_revoke_refresh_tokens_knob(http: httpx.Client, stub: GmailStub) -> None:
    alice, bob = stub.issue_tokens(ALICE), stub.issue_tokens("bob@example.com")
    stub.revoke_refresh_tokens(ALICE)
    assert refresh(http, stub, alice["refresh_token"]).json()["error"] == "invalid_grant"
    assert refresh(http, stub, bob["refresh_token"]).status_code == 200


# ---------------------------------------------------------------- authentication of API calls


def test_api_calls_need_a_valid_unexpired_bearer_token(http: httpx.Client, stub: GmailStub) -> None:
    tokens = stub.issue_tokens(ALICE)
    for token in (None, "ya29.not-a-real-token"):
        response = gmail(http, token, "profile")
        assert_google_error(response, 401, "UNAUTHENTICATED", "authError")
        assert response.json()["error"]["message"].startswith(
            "Request had invalid authentication credentials"
        )
        assert response.headers["www-authenticate"].startswith("Bearer")
    assert gmail(http, tokens["access_token"], "profile").status_code == 200

    stub.expire_access_tokens()
    assert gmail(http, tokens["access_token"], "profile").status_code == 401
    fresh = refresh(http, stub, tokens["refresh_token"]).json()["access_token"]
    assert gmail(http, fresh, "profile").status_code == 200

    stub.access_token_ttl = 0  # tokens born expired, as after an hour
    short = refresh(http, stub, tokens["refresh_token"]).json()
    assert short["expires_in"] == 0
    assert gmail(http, short["access_token"], "profile").status_code == 401
    assert stub.counters.refresh_grants[ALICE] == 2


def test_user_id_must_be_me_or_the_account_itself(http: httpx.Client, stub: GmailStub) -> None:
    headers = {"Authorization": f"Bearer {signed_in(stub)}"}
    assert http.get(f"/gmail/v1/users/{ALICE}/profile", headers=headers).status_code == 200
    other = http.get("/gmail/v1/users/bob@example.com/profile", headers=headers)
    assert_google_error(other, 403, "PERMISSION_DENIED")


# ---------------------------------------------------------------- profile and list


def test_profile_counts_messages_and_threads(http: httpx.Client, stub: GmailStub) -> None:
    token = signed_in(stub)
    first = mime_plain("Lunch?", message_id="<lunch-1@example.com>")
    first_id = stub.add_message(ALICE, first)
    reply_id = stub.add_message(ALICE, mime_plain("Re: Lunch?", in_reply_to="<lunch-1@example.com>"))
    stub.add_message(ALICE, mime_plain("Unrelated"))
    profile = gmail(http, token, "profile").json()
    assert profile == {
        "emailAddress": ALICE,
        "messagesTotal": 3,
        "threadsTotal": 2,
        "historyId": str(stub.history_id(ALICE)),
    }
    reply = gmail(http, token, f"messages/{reply_id}", format="minimal").json()
    assert reply["threadId"] == first_id  # In-Reply-To joined it to the first message's thread


def test_list_pages_through_every_message_newest_first(http: httpx.Client, stub: GmailStub) -> None:
    token = signed_in(stub)
    ids = [stub.add_message(ALICE, mime_plain(f"Message {i}")) for i in range(25)]
    seen: list[str] = []
    pages = []
    page_token = None
    while True:
        params = {"maxResults": 10} | ({"pageToken": page_token} if page_token else {})
        body = gmail(http, token, "messages", **params).json()
        pages.append(len(body["messages"]))
        assert body["resultSizeEstimate"] == 25 + (len(pages) > 1)
        assert all(set(m) == {"id", "threadId"} for m in body["messages"])
        seen += [m["id"] for m in body["messages"]]
        if len(pages) == 1:
            stub.add_message(ALICE, mime_plain("Arrived while paging"))  # must not shift later pages
        page_token = body.get("nextPageToken")
        if page_token is None:
            break
    assert pages == [10, 10, 5]
    assert seen == ids[::-1]
    assert stub.counters.calls["messages.list"] == 3
    assert stub.counters.quota_units[ALICE] == 15

    bad = gmail(http, token, "messages", pageToken="12345")
    assert_google_error(bad, 400, "INVALID_ARGUMENT")


def test_list_hides_spam_and_trash_and_filters(http: httpx.Client, stub: GmailStub) -> None:
    token = signed_in(stub)
    inbox = stub.add_message(ALICE, mime_plain("Invoice for May"))
    read = stub.add_message(ALICE, mime_plain("Old news"), label_ids=["INBOX"])
    archived = stub.add_message(ALICE, mime_plain("Archived"), label_ids=[])
    spam = stub.add_message(ALICE, mime_plain("Win a prize"), label_ids=["SPAM"])
    trash = stub.add_message(ALICE, mime_plain("Deleted"), label_ids=["TRASH"])

    def listed(**params: Any) -> list[str]:
        body = gmail(http, token, "messages", **params).json()
        return [m["id"] for m in body.get("messages", [])]

    everything_visible = [archived, read, inbox]
    assert listed() == everything_visible
    assert listed(q="-in:spam -in:trash") == everything_visible
    assert listed(includeSpamTrash="true") == [trash, spam, archived, read, inbox]
    assert listed(q="in:spam") == [spam]
    assert listed(labelIds="INBOX") == [read, inbox]
    assert listed(q="is:unread") == [inbox]
    assert listed(q="subject:invoice") == [inbox]
    assert listed(q="prize") == []  # spam stays hidden from free text
    assert listed(q="prize", includeSpamTrash="true") == [spam]
    empty = gmail(http, token, "messages", q="nothing-matches-this").json()
    assert empty == {"resultSizeEstimate": 0}  # Gmail leaves the empty list out


# ---------------------------------------------------------------- get


def test_get_raw_round_trips_the_exact_bytes(http: httpx.Client, stub: GmailStub) -> None:
    token = signed_in(stub)
    fixtures = [
        mime_plain(),
        mime_alternative(),
        mime_html_only(),
        mime_legacy_charset("iso-8859-1"),
        mime_legacy_charset("windows-1252", cte="8bit"),
        mime_encoded_headers(),
        mime_with_attachment(),
        mime_broken_boundary(),
        mime_missing_headers(),
    ]
    for raw in fixtures:
        message_id = stub.add_message(ALICE, raw, label_ids=["INBOX", "CATEGORY_UPDATES"])
        body = gmail(http, token, f"messages/{message_id}", format="raw").json()
        assert unb64(body["raw"]) == raw
        assert body["id"] == message_id
        assert body["labelIds"] == ["INBOX", "CATEGORY_UPDATES"]
        assert body["sizeEstimate"] == len(raw)
        assert body["internalDate"].isdigit() and body["historyId"].isdigit()
        assert "payload" not in body


def test_get_full_builds_the_part_tree_and_attachments_come_by_id(
    http: httpx.Client, stub: GmailStub
) -> None:
    token = signed_in(stub)
    pdf = sample_pdf()
    raw = mime_with_attachment(
        [("invoice.pdf", pdf, "application/pdf"), ("notes.txt", b"Ship it\n", "text/plain")]
    )
    message_id = stub.add_message(ALICE, raw)
    body = gmail(http, token, f"messages/{message_id}").json()  # format=full is the default
    assert body["snippet"] == "Please find the invoice attached."
    payload = body["payload"]
    assert (payload["partId"], payload["mimeType"], payload["body"]) == ("", "multipart/mixed", {"size": 0})
    assert {"name": "Subject", "value": "Invoice attached"} in payload["headers"]
    alternative, pdf_part, txt_part = payload["parts"]
    assert (alternative["partId"], alternative["mimeType"]) == ("0", "multipart/alternative")
    plain, html = alternative["parts"]
    assert [plain["partId"], html["partId"]] == ["0.0", "0.1"]
    assert unb64(plain["body"]["data"]) == b"Please find the invoice attached.\r\n"  # CRLF, as sent
    assert plain["body"]["size"] == len(b"Please find the invoice attached.\r\n")
    assert html["mimeType"] == "text/html" and b"<i>attached</i>" in unb64(html["body"]["data"])
    assert (pdf_part["partId"], pdf_part["filename"], pdf_part["mimeType"]) == (
        "1",
        "invoice.pdf",
        "application/pdf",
    )
    assert (txt_part["filename"], txt_part["mimeType"]) == ("notes.txt", "text/plain")
    for part, content in ((pdf_part, pdf), (txt_part, b"Ship it\n")):
        assert "data" not in part["body"]
        assert part["body"]["size"] == len(content)
        url = f"messages/{message_id}/attachments/{part['body']['attachmentId']}"
        attachment = gmail(http, token, url).json()
        assert unb64(attachment["data"]) == content
        assert attachment["size"] == len(content)
    assert pdf.startswith(b"%PDF")
    missing = gmail(http, token, f"messages/{message_id}/attachments/ANGjdJnope")
    assert missing.status_code == 400


def test_full_format_keeps_charsets_and_decodes_encoded_word_headers(
    http: httpx.Client, stub: GmailStub
) -> None:
    token = signed_in(stub)

    def full(raw: bytes) -> dict[str, Any]:
        return gmail(http, token, f"messages/{stub.add_message(ALICE, raw)}", format="full").json()

    def header(payload: dict[str, Any], name: str) -> str:
        return next(h["value"] for h in payload["headers"] if h["name"] == name)

    encoded = full(mime_encoded_headers("Grüße aus Köln 🎉", "Jürgen Müller"))["payload"]
    assert header(encoded, "Subject") == "Grüße aus Köln 🎉"
    assert header(encoded, "From") == "Jürgen Müller <juergen@example.de>"
    assert unb64(encoded["body"]["data"]) == b"Bis bald!\n"

    for charset, text in (("iso-8859-1", "Café crème, naïve façade"), ("windows-1252", "Prix : 12 €")):
        message = full(mime_legacy_charset(charset))
        payload = message["payload"]
        assert header(payload, "Content-Type") == f'text/plain; charset="{charset}"'
        data = unb64(payload["body"]["data"])  # Gmail keeps the part's own charset
        assert text in data.decode(charset)
        assert text.encode(charset) in data
        assert message["snippet"].startswith(text)

    html_only = full(mime_html_only())
    assert html_only["payload"]["mimeType"] == "text/html"
    assert html_only["snippet"] == "May news Tickets &amp; dates for the summer fair are out."

    alternative = full(mime_alternative())["payload"]
    assert [p["mimeType"] for p in alternative["parts"]] == ["text/plain", "text/html"]
    assert [p["partId"] for p in alternative["parts"]] == ["0", "1"]

    stub.decode_headers = False
    raw_header = header(full(mime_encoded_headers("Grüße"))["payload"], "Subject")
    assert raw_header.startswith("=?utf-8?b?")


def test_malformed_messages_still_get_a_payload(http: httpx.Client, stub: GmailStub) -> None:
    token = signed_in(stub)
    broken = gmail(http, token, f"messages/{stub.add_message(ALICE, mime_broken_boundary())}").json()
    assert broken["payload"]["mimeType"] == "multipart/mixed"
    parsed = message_from_bytes(mime_broken_boundary(), policy=email_policy.compat32)
    assert parsed.defects  # really malformed for the stdlib parser too
    bare = gmail(http, token, f"messages/{stub.add_message(ALICE, mime_missing_headers())}").json()
    assert bare["payload"]["mimeType"] == "text/plain"
    assert bare["payload"]["headers"] == [
        {"name": "To", "value": "alice@example.com"},
        {"name": "X-Mailer", "value": "ancient"},
    ]
    assert unb64(bare["payload"]["body"]["data"]).startswith(b"No headers to speak of.")
    assert bare["snippet"] == "No headers to speak of. Café au lait."


def test_get_unknown_or_invalid_ids_and_metadata_format(http: httpx.Client, stub: GmailStub) -> None:
    token = signed_in(stub)
    message_id = stub.add_message(ALICE, mime_alternative())
    assert_google_error(gmail(http, token, "messages/18f0000000000000"), 404, "NOT_FOUND", "notFound")
    assert gmail(http, token, "messages/18f0000000000000").json()["error"]["message"] == (
        "Requested entity was not found."
    )
    assert_google_error(gmail(http, token, "messages/not-an-id!"), 400, "INVALID_ARGUMENT")
    metadata = gmail(
        http, token, f"messages/{message_id}", format="metadata", metadataHeaders=["Subject", "From"]
    ).json()
    assert [h["name"] for h in metadata["payload"]["headers"]] == ["From", "Subject"]
    assert "parts" not in metadata["payload"]
    minimal = gmail(http, token, f"messages/{message_id}", format="minimal").json()
    assert set(minimal) == {
        "id",
        "threadId",
        "labelIds",
        "snippet",
        "sizeEstimate",
        "historyId",
        "internalDate",
    }

    metadata_token = signed_in(stub, (GMAIL_METADATA,))
    assert gmail(http, metadata_token, f"messages/{message_id}", format="full").status_code == 403
    assert gmail(http, metadata_token, "messages", q="in:inbox").status_code == 403
    assert gmail(http, metadata_token, f"messages/{message_id}", format="metadata").status_code == 200


# ---------------------------------------------------------------- history


def test_history_reports_changes_since_a_history_id(http: httpx.Client, stub: GmailStub) -> None:
    token = signed_in(stub)
    kept = stub.add_message(ALICE, mime_plain("Kept"))
    start = gmail(http, token, "profile").json()["historyId"]
    added = stub.add_message(ALICE, mime_plain("New"), label_ids=["INBOX", "UNREAD"])
    stub.modify_labels(ALICE, kept, add=["STARRED"], remove=["UNREAD"])
    stub.modify_labels(ALICE, kept, add=["STARRED"])  # no change, no record
    stub.delete_message(ALICE, added)

    body = gmail(http, token, "history", startHistoryId=start).json()
    assert body["historyId"] == gmail(http, token, "profile").json()["historyId"]
    records = body["history"]
    ids = [int(r["id"]) for r in records]
    assert ids == sorted(ids) and ids[0] > int(start) and ids[-1] == int(body["historyId"])
    assert len(records) == 3
    first, second, third = records
    assert first["messagesAdded"] == [
        {"message": {"id": added, "threadId": added, "labelIds": ["INBOX", "UNREAD"]}}
    ]
    assert first["messages"] == [{"id": added, "threadId": added}]
    assert second["labelsAdded"] == [
        {"message": {"id": kept, "threadId": kept, "labelIds": ["INBOX", "STARRED"]}, "labelIds": ["STARRED"]}
    ]
    assert second["labelsRemoved"][0]["labelIds"] == ["UNREAD"]
    assert third["messagesDeleted"][0]["message"]["id"] == added
    assert set(third) == {"id", "messages", "messagesDeleted"}

    only_deleted = gmail(http, token, "history", startHistoryId=start, historyTypes="messageDeleted").json()
    assert [r["id"] for r in only_deleted["history"]] == [third["id"]]

    paged, page_token = [], None
    while True:
        params = {"startHistoryId": start, "maxResults": 1} | (
            {"pageToken": page_token} if page_token else {}
        )
        page = gmail(http, token, "history", **params).json()
        paged += page["history"]
        page_token = page.get("nextPageToken")
        if not page_token:
            break
    assert paged == records

    current = gmail(http, token, "history", startHistoryId=body["historyId"]).json()
    assert current == {"historyId": body["historyId"]}  # nothing new: no "history" key at all
    assert stub.counters.quota_units[ALICE] == 2 * 6 + 1 * 2


def test_expired_history_is_404(http: httpx.Client, stub: GmailStub) -> None:
    token = signed_in(stub)
    old = stub.history_id(ALICE)
    stub.add_message(ALICE, mime_plain("One"))
    floor = stub.history_id(ALICE)
    stub.add_message(ALICE, mime_plain("Two"))
    stub.expire_history_before(floor)
    assert_google_error(gmail(http, token, "history", startHistoryId=str(old)), 404, "NOT_FOUND")
    assert len(gmail(http, token, "history", startHistoryId=str(floor)).json()["history"]) == 1
    assert gmail(http, token, "history").status_code == 400  # startHistoryId is required


# ---------------------------------------------------------------- quota and faults


def test_quota_answers_429_with_retry_after_and_recovers(http: httpx.Client, stub: GmailStub) -> None:
    token = signed_in(stub)
    stub.quota_units_per_second = 10
    assert gmail(http, token, "messages").status_code == 200
    assert gmail(http, token, "messages").status_code == 200
    limited = gmail(http, token, "messages")
    assert_google_error(limited, 429, "RESOURCE_EXHAUSTED", "rateLimitExceeded")
    assert limited.json()["error"]["message"].startswith("User-rate limit exceeded.")
    assert limited.headers["retry-after"] == "1"
    assert stub.counters.rate_limited == 1
    time.sleep(float(limited.headers["retry-after"]))
    assert gmail(http, token, "messages").status_code == 200
    assert stub.counters.quota_units[ALICE] == 15  # refused calls are not charged
    assert stub.counters.calls["messages.list"] == 4


def test_fail_next_injects_the_given_statuses(http: httpx.Client, stub: GmailStub) -> None:
    token = signed_in(stub)
    stub.fail_next(2, status=503)
    stub.fail_next(1, status=429, retry_after=7)
    stub.fail_next(1, status=500)
    responses = [gmail(http, token, "profile") for _ in range(5)]
    assert [r.status_code for r in responses] == [503, 503, 429, 500, 200]
    assert_google_error(responses[0], 503, "UNAVAILABLE", "backendError")
    assert responses[2].headers["retry-after"] == "7"
    assert_google_error(responses[2], 429, "RESOURCE_EXHAUSTED", "rateLimitExceeded")
    assert_google_error(responses[3], 500, "INTERNAL", "backendError")
    assert "retry-after" not in responses[0].headers
    assert stub.counters.calls["getProfile"] == 5
    assert stub.counters.statuses == {503: 2, 429: 1, 500: 1, 200: 1}
    assert stub.counters.rate_limited == 1
    assert stub.counters.quota_units[ALICE] == 1  # failed calls cost nothing


def test_latency_knob_delays_answers(http: httpx.Client, stub: GmailStub) -> None:
    token = signed_in(stub)
    stub.latency_seconds = 0.2
    started = time.monotonic()
    assert gmail(http, token, "profile").status_code == 200
    assert time.monotonic() - started >= 0.2


# ---------------------------------------------------------------- discovery and async use


def test_discovery_document_describes_callable_methods(http: httpx.Client, stub: GmailStub) -> None:
    response = http.get("/discovery/v1/apis/gmail/v1/rest")
    assert response.status_code == 200
    document = json.loads(response.content)
    assert document["kind"] == "discovery#restDescription"
    assert document["rootUrl"] == f"{stub.base_url}/"
    assert document["servicePath"] == "gmail/v1/users/"
    users = document["resources"]["users"]
    methods = {
        "getProfile": users["methods"]["getProfile"],
        "messages.list": users["resources"]["messages"]["methods"]["list"],
        "messages.get": users["resources"]["messages"]["methods"]["get"],
        "attachments.get": users["resources"]["messages"]["resources"]["attachments"]["methods"]["get"],
        "history.list": users["resources"]["history"]["methods"]["list"],
    }
    for method in methods.values():
        assert method["httpMethod"] == "GET"
        for name in method["parameterOrder"]:
            assert method["parameters"][name]["location"] == "path"
            assert f"{{{name}}}" in method["path"]
        assert method["response"]["$ref"] in document["schemas"]
    assert methods["history.list"]["parameters"]["startHistoryId"]["required"] is True
    assert methods["messages.get"]["parameters"]["format"]["enum"] == ["minimal", "full", "raw", "metadata"]

    # A client building URLs from the document alone reaches every method.
    token = signed_in(stub)
    message_id = stub.add_message(ALICE, mime_with_attachment())
    part = gmail(http, token, f"messages/{message_id}").json()["payload"]["parts"][1]
    values = {"userId": "me", "id": message_id, "messageId": message_id}
    query = {"history.list": {"startHistoryId": str(stub.history_id(ALICE) - 1)}}
    for name, method in methods.items():
        path_values = values | ({"id": part["body"]["attachmentId"]} if name == "attachments.get" else {})
        url = document["rootUrl"] + document["servicePath"] + method["path"].format(**path_values)
        reply = httpx.get(url, params=query.get(name, {}), headers={"Authorization": f"Bearer {token}"})
        assert reply.status_code == 200, (name, reply.text)
        assert set(reply.json()) <= set(document["schemas"][method["response"]["$ref"]]["properties"])


async def test_usable_from_async_code() -> None:
    async with GmailStub() as stub:
        token = stub.issue_tokens(ALICE)["access_token"]
        stub.add_message(ALICE, mime_plain())
        async with httpx.AsyncClient(base_url=stub.gmail_url, timeout=5) as client:
            headers = {"Authorization": f"Bearer {token}"}
            profile, listing = (
                await client.get("/users/me/profile", headers=headers),
                await client.get("/users/me/messages", headers=headers),
            )
        assert profile.json()["messagesTotal"] == 1
        assert len(listing.json()["messages"]) == 1
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{stub.base_url}/gmail/v1/users/me/profile")
