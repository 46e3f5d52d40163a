"""Pure parts of the mail service: history folding, thread-aware chunk text, Google error
mapping, the authorization URL."""

import base64
import hashlib
import uuid
from types import SimpleNamespace
from urllib.parse import parse_qs, urlsplit

import pytest
from aiogoogle.excs import HTTPError

from services.mail.crypto import generate_key
from services.mail.google import (
    AccessTokenRejected,
    Google,
    GoogleError,
    InvalidGrant,
    Pkce,
    RetryableGoogleError,
    _google_error,
)
from services.mail.indexing import email_chunks, header, own_text
from services.mail.models import Email
from services.mail.settings import MailSettings
from services.mail.sync import Changes, _apply
from shared.text.chunking import ChunkSizes


def record(kind: str, gmail_id: str, labels: list[str] | None = None) -> dict:
    return {kind: [{"message": {"id": gmail_id, "labelIds": labels or ["INBOX"]}}]}


def fold(*records: dict) -> Changes:
    changes = Changes(set(), set(), {}, "1")
    for r in records:
        _apply(changes, r)
    return changes


def test_history_folding_keeps_the_last_word():
    changes = fold(
        record("messagesAdded", "a"),
        record("messagesAdded", "b"),
        record("messagesDeleted", "b"),
        record("labelsRemoved", "c", ["INBOX"]),
        record("labelsAdded", "d", ["INBOX", "TRASH"]),
        record("messagesAdded", "spam", ["SPAM"]),
    )
    assert changes.added == {"a"}
    assert changes.deleted == {"b", "d"}
    assert changes.labels == {"c": ["INBOX"]}


def test_a_message_restored_from_trash_comes_back():
    changes = fold(record("labelsAdded", "x", ["TRASH"]), record("labelsRemoved", "x", ["INBOX"]))
    assert "x" not in changes.deleted and changes.labels == {"x": ["INBOX"]}


def test_own_text_cuts_quoted_history():
    body = (
        "Sounds good, see you then.\n\n"
        "On Tue, 3 Mar 2026 at 10:00, Anna <a@x.org> wrote:\n> Lunch on Friday?\n"
    )
    assert own_text(body) == "Sounds good, see you then."
    assert own_text("> only a quote\nMy answer") == "My answer"
    assert own_text("-----Original Message-----\nkept when it is all there is") != ""


def test_email_chunks_carry_subject_and_sender():
    email = Email(
        owner_id=uuid.uuid4(),
        account_id=uuid.uuid4(),
        gmail_id="1",
        thread_id="1",
        subject="Invoice 7",
        sender_name="Anna",
        sender_address="anna@example.com",
        body_text="word " * 400,
    )
    chunks = email_chunks(email, ChunkSizes(generic=300))
    assert len(chunks) > 3
    assert [piece.index for piece in chunks] == list(range(len(chunks)))
    body = own_text(email.body_text)
    for piece in chunks:  # exact offsets into the body's own text
        assert body[piece.start : piece.end] == piece.text and piece.text
    assert header(email) == "Subject: Invoice 7\nFrom: Anna <anna@example.com>\n\n"
    empty = Email(owner_id=uuid.uuid4(), account_id=uuid.uuid4(), gmail_id="2", thread_id="2", subject="Hi")
    assert [piece.text for piece in email_chunks(empty, ChunkSizes())] == [""]
    assert header(empty) == "Subject: Hi\nFrom: \n\n"


def error(status: int, body: object, headers: dict | None = None) -> HTTPError:
    res = SimpleNamespace(status_code=status, json=body, headers=headers or {})
    return HTTPError("failed", res=res)


def test_google_errors_are_typed():
    assert isinstance(_google_error(error(400, {"error": "invalid_grant"})), InvalidGrant)
    assert isinstance(
        _google_error(error(401, {"error": {"code": 401, "message": "x"}})), AccessTokenRejected
    )
    limited = _google_error(
        error(
            403,
            {"error": {"errors": [{"reason": "rateLimitExceeded"}], "message": "slow down"}},
            {"Retry-After": "3"},
        )
    )
    assert isinstance(limited, RetryableGoogleError) and limited.retry_after == 3.0
    assert isinstance(_google_error(error(503, None)), RetryableGoogleError)
    plain = _google_error(error(404, {"error": {"code": 404, "message": "Requested entity was not found."}}))
    assert type(plain) is GoogleError and plain.status == 404


def test_authorization_url_carries_pkce_and_an_encoded_redirect():
    settings = MailSettings(
        _env_file=None,
        google_client_id="client",
        google_client_secret="secret",
        oauth_redirect_uri="https://pai.example/mail/oauth/callback?x=1&y=2",
        mail_token_keys="unused",
    )
    pkce = Pkce.new()
    url = Google(settings).authorization_url("state-123", pkce)
    query = {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}
    assert url.startswith("https://accounts.google.com/o/oauth2/v2/auth?")
    assert query["redirect_uri"] == "https://pai.example/mail/oauth/callback?x=1&y=2"
    assert query["state"] == "state-123" and query["client_id"] == "client"
    digest = hashlib.sha256(pkce.verifier.encode()).digest()
    assert query["code_challenge"] == base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
    assert 43 <= len(pkce.verifier) <= 128


def test_no_token_key_means_no_start(tmp_path):
    settings = MailSettings(_env_file=None, mail_token_keys=None, mail_token_keys_file=tmp_path / "missing")
    with pytest.raises(RuntimeError, match="keygen"):
        settings.token_cipher()
    (tmp_path / "keys").write_text(generate_key() + "\n")
    cipher = MailSettings(
        _env_file=None, mail_token_keys=None, mail_token_keys_file=tmp_path / "keys"
    ).token_cipher()
    assert cipher.decrypt(cipher.encrypt("ya29.token")) == "ya29.token"
