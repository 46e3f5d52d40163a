"""A local stand-in for Gmail's REST API and Google's OAuth 2.0 endpoints, for tests.

Google can't be reached from our machines, so mail-sync code is tested against this instead: it speaks
the real wire format (paths, query parameters, JSON shapes, Google's error bodies and status codes) over
real HTTP, so the code under test runs unchanged with only its base URLs pointed here. Where clients
usually go wrong the stub is deliberately as strict as Google: empty lists are left out of responses,
64-bit ids are JSON strings, history ids have gaps, attachment bodies come only by id, page tokens are
opaque, a refresh token comes only with ``access_type=offline``, and the email is in userinfo only when
the ``email`` scope was granted.

:class:`GmailStub` runs it with uvicorn in a background thread on a free port. Tests fill mailboxes with
real RFC 822 bytes (the ``mime_*`` functions at the bottom make some), script consent and tokens, switch
faults on with knobs (injected 429/5xx, latency, expired or revoked tokens, expired history, a per-user
quota) and read :class:`Counters` to see what the client did.
"""

import asyncio
import base64
import hashlib
import json
import math
import re
import secrets
import socket
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email import message_from_bytes
from email import policy as email_policy
from email.header import Header, decode_header, make_header
from email.message import EmailMessage, Message
from email.mime.text import MIMEText
from email.parser import BytesHeaderParser
from email.utils import format_datetime, make_msgid
from functools import cache
from html.parser import HTMLParser
from typing import Any
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

GMAIL_FULL = "https://mail.google.com/"
GMAIL_MODIFY = "https://www.googleapis.com/auth/gmail.modify"
GMAIL_READONLY = "https://www.googleapis.com/auth/gmail.readonly"
GMAIL_METADATA = "https://www.googleapis.com/auth/gmail.metadata"
GMAIL_SCOPES = frozenset({GMAIL_FULL, GMAIL_MODIFY, GMAIL_READONLY, GMAIL_METADATA})
USERINFO_EMAIL = "https://www.googleapis.com/auth/userinfo.email"
USERINFO_PROFILE = "https://www.googleapis.com/auth/userinfo.profile"
# Google answers with the long form of the short scope names it accepts.
_SCOPE_ALIASES = {"email": USERINFO_EMAIL, "profile": USERINFO_PROFILE}

# Gmail's quota units per method (https://developers.google.com/gmail/api/reference/quota).
COSTS = {"getProfile": 1, "messages.list": 5, "messages.get": 5, "attachments.get": 5, "history.list": 2}
HISTORY_TYPES = {
    "messageAdded": "messagesAdded",
    "messageDeleted": "messagesDeleted",
    "labelAdded": "labelsAdded",
    "labelRemoved": "labelsRemoved",
}
DEFAULT_LABELS = ("INBOX", "UNREAD")
HISTORY_STEP = 7  # Gmail's history ids grow with gaps; clients must not assume id + 1 exists.

_AUTH_MESSAGE = (
    "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other "
    "valid authentication credential. See https://developers.google.com/identity/sign-in/web/devconsole-project."
)
_GOOGLE_STATUS: dict[int, tuple[str, str, str]] = {
    400: ("INVALID_ARGUMENT", "invalidArgument", "Invalid argument."),
    401: ("UNAUTHENTICATED", "authError", _AUTH_MESSAGE),
    403: ("PERMISSION_DENIED", "forbidden", "The caller does not have permission"),
    404: ("NOT_FOUND", "notFound", "Requested entity was not found."),
    405: ("UNIMPLEMENTED", "methodNotAllowed", "Method not allowed."),
    429: ("RESOURCE_EXHAUSTED", "rateLimitExceeded", "User-rate limit exceeded."),
    500: ("INTERNAL", "backendError", "Internal error encountered."),
    503: ("UNAVAILABLE", "backendError", "The service is currently unavailable."),
}


def google_error(
    code: int, message: str | None = None, reason: str | None = None, headers: dict[str, str] | None = None
) -> JSONResponse:
    """Google's JSON error body for API calls: ``{"error": {"code", "message", "errors", "status"}}``."""
    status, default_reason, default_message = _GOOGLE_STATUS.get(code, ("UNKNOWN", "unknown", "Error."))
    message = message or default_message
    detail: dict[str, str] = {"message": message, "domain": "global", "reason": reason or default_reason}
    if code == 401:
        detail.update(message="Invalid Credentials", location="Authorization", locationType="header")
        headers = {"WWW-Authenticate": 'Bearer realm="https://accounts.google.com/"', **(headers or {})}
    body = {"error": {"code": code, "message": message, "errors": [detail], "status": status}}
    return JSONResponse(body, code, headers=headers)


def oauth_error(error: str, description: str, status: int = 400) -> JSONResponse:
    """The OAuth 2.0 error body Google's token and auth endpoints answer with (RFC 6749 §5.2)."""
    return JSONResponse({"error": error, "error_description": description}, status)


def b64url(data: bytes) -> str:
    """Base64url with padding, as Gmail sends ``raw`` and ``body.data``."""
    return base64.urlsafe_b64encode(data).decode()


class Reject(Exception):
    """Raised inside a handler to answer with ``response`` instead."""

    def __init__(self, response: Response) -> None:
        super().__init__(response.status_code)
        self.response = response


# ---------------------------------------------------------------- state


@dataclass
class StoredMessage:
    id: str
    thread_id: str
    label_ids: list[str]
    raw: bytes
    internal_date: int  # epoch ms; orders the mailbox, newest first
    history_id: int  # the last history record that touched this message
    seq: int  # insertion order, breaks internalDate ties
    _parsed: Message | None = field(default=None, repr=False)
    _text: str | None = field(default=None, repr=False)

    @property
    def parsed(self) -> Message:
        if self._parsed is None:
            self._parsed = message_from_bytes(self.raw, policy=email_policy.compat32)
        return self._parsed

    @property
    def sort_key(self) -> tuple[int, int]:
        return (self.internal_date, self.seq)

    def ref(self, labels: bool = True) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id, "threadId": self.thread_id}
        if labels and self.label_ids:
            out["labelIds"] = list(self.label_ids)
        return out

    def search_text(self) -> str:
        """Lower-cased headers and body text, what a free-text ``q`` term is matched against."""
        if self._text is None:
            heads = " ".join(header_text(v) for k, v in self.parsed.raw_items() if k.lower() in _SEARCHED)
            self._text = f"{heads} {body_text(self.parsed)}".lower()
        return self._text


_SEARCHED = {"subject", "from", "to", "cc", "bcc"}


@dataclass
class HistoryRecord:
    id: int
    message: dict[str, Any]  # id, threadId, labelIds after the change
    changes: dict[str, list[str]]  # history type -> label ids it changed ([] for added / deleted)

    def to_json(self, types: set[str]) -> dict[str, Any] | None:
        kept = {kind: labels for kind, labels in self.changes.items() if not types or kind in types}
        if not kept:
            return None
        out: dict[str, Any] = {
            "id": str(self.id),
            "messages": [{k: self.message[k] for k in ("id", "threadId")}],
        }
        for kind, labels in kept.items():
            entry: dict[str, Any] = {"message": dict(self.message)}
            if kind.startswith("label"):
                entry["labelIds"] = labels
            out[HISTORY_TYPES[kind]] = [entry]
        return out


@dataclass
class Mailbox:
    email: str
    history_id: int
    messages: dict[str, StoredMessage] = field(default_factory=dict)
    history: list[HistoryRecord] = field(default_factory=list)
    history_floor: int = 0  # a startHistoryId below this is 404: the history was expired
    threads_by_message_id: dict[str, str] = field(default_factory=dict)  # Message-ID header -> threadId


@dataclass
class Grant:
    """What one consent (or :meth:`GmailStub.issue_tokens`) gave a client; its tokens die with it."""

    email: str
    client_id: str
    scopes: list[str]
    refresh_token: str | None
    revoked: bool = False


@dataclass
class AccessToken:
    grant: Grant
    expires_at: float  # time.monotonic()

    @property
    def valid(self) -> bool:
        return not self.grant.revoked and time.monotonic() < self.expires_at


@dataclass
class AuthCode:
    client_id: str
    redirect_uri: str
    email: str
    scopes: list[str]
    challenge: str | None
    method: str | None
    offline: bool
    nonce: str | None
    expires_at: float
    used: bool = False


@dataclass
class Counters:
    """What clients did, for tests to assert on. Gmail endpoints are named as in :data:`COSTS`; the OAuth
    ones are ``auth``, ``token``, ``revoke`` and ``userinfo``."""

    calls: Counter[str] = field(default_factory=Counter)  # endpoint -> requests received
    refresh_grants: Counter[str] = field(default_factory=Counter)  # account email -> refresh grants served
    code_grants: Counter[str] = field(default_factory=Counter)  # account email -> codes redeemed
    quota_units: Counter[str] = field(default_factory=Counter)  # account email -> Gmail units charged
    rate_limited: int = 0  # 429s sent by the Gmail API (quota or injected)
    statuses: Counter[int] = field(default_factory=Counter)  # status codes sent by the Gmail API
    requests: list[str] = field(default_factory=list)  # "GET /gmail/v1/...?query" of each Gmail API call


# ---------------------------------------------------------------- the stub


class GmailStub:
    """Gmail + Google OAuth on ``127.0.0.1:<free port>``; the knobs are plain attributes, set them any time.

    Use ``with GmailStub() as stub`` (or ``async with``), or ``start()`` / ``stop()``; :meth:`reset` gives a
    clean world without restarting, for a module-scoped server. All state sits behind one lock, so tests
    may change it while a client is talking to the server thread.
    """

    def __init__(
        self,
        *,
        client_id: str = "stub-client.apps.googleusercontent.com",
        client_secret: str = "stub-client-secret",  # noqa: S107
        consenting_email: str = "alice@example.com",
    ) -> None:
        self.client_id = client_id
        self.client_secret = client_secret
        self._default_email = consenting_email
        self.lock = threading.RLock()
        self._history_counter = 100_000
        self._seq = 0
        self._last_internal_date = 0
        self.app = self._build_app()
        self.port: int | None = None
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self.reset()

    def reset(self) -> None:
        """Forget every mailbox, token and fault; knobs back to defaults (ids keep growing)."""
        with self.lock:
            self.consenting_email: str = self._default_email  # who clicks "Allow" on the consent screen
            self.consent_denied = False  # True: the user clicks "Cancel" -> error=access_denied
            self.granted_scopes: list[str] | None = None  # None: all requested; else the user unticks others
            self.redirect_uris: set[str] | None = None  # None: any redirect_uri is registered
            self.access_token_ttl = 3599  # seconds, Google's expires_in
            self.quota_units_per_second: float | None = None  # per-user token bucket; None = unlimited
            self.latency_seconds = 0.0  # added before every answer
            self.decode_headers = True  # RFC 2047 encoded-words in payload header values decoded, as Gmail
            self.counters = Counters()
            self.mailboxes: dict[str, Mailbox] = {}
            self._faults: deque[tuple[int, str | None]] = deque()
            self._buckets: dict[str, tuple[float, float, float]] = {}  # email -> (rate, units, at)
            self._access: dict[str, AccessToken] = {}
            self._refresh: dict[str, Grant] = {}
            self._codes: dict[str, AuthCode] = {}
            self._page_tokens: dict[str, tuple[str, str, Any]] = {}  # token -> (endpoint, email, cursor)

    # ------------------------------------------------------------ running

    def start(self) -> "GmailStub":
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))  # bound before uvicorn runs: no race for the port
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(self.app, log_level="warning", lifespan="off", access_log=False)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [sock]}, name="gmail-stub", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the Gmail stub did not start")
            time.sleep(0.005)
        return self

    def stop(self) -> None:
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._thread.join(timeout=10)
        self._server = self._thread = None

    def __enter__(self) -> "GmailStub":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    async def __aenter__(self) -> "GmailStub":
        return await asyncio.to_thread(self.start)

    async def __aexit__(self, *exc: object) -> None:
        await asyncio.to_thread(self.stop)

    @property
    def base_url(self) -> str:
        if self.port is None:
            raise RuntimeError("the Gmail stub is not started")
        return f"http://127.0.0.1:{self.port}"

    # Where the real ones would be, for a client's settings.
    @property
    def auth_url(self) -> str:  # https://accounts.google.com/o/oauth2/v2/auth
        return f"{self.base_url}/o/oauth2/v2/auth"

    @property
    def token_url(self) -> str:  # https://oauth2.googleapis.com/token
        return f"{self.base_url}/token"

    @property
    def revoke_url(self) -> str:  # https://oauth2.googleapis.com/revoke
        return f"{self.base_url}/revoke"

    @property
    def userinfo_url(self) -> str:  # https://www.googleapis.com/oauth2/v3/userinfo
        return f"{self.base_url}/oauth2/v3/userinfo"

    @property
    def gmail_url(self) -> str:  # https://gmail.googleapis.com/gmail/v1
        return f"{self.base_url}/gmail/v1"

    @property
    def discovery_url(self) -> str:
        return f"{self.base_url}/discovery/v1/apis/gmail/v1/rest"

    def service_env(self) -> dict[str, str]:
        """The mail service's Google settings (environment variables) pointed at this stub."""
        return {
            "PAI_GOOGLE_CLIENT_ID": self.client_id,
            "PAI_GOOGLE_CLIENT_SECRET": self.client_secret,
            "PAI_GOOGLE_AUTH_URL": self.auth_url,
            "PAI_GOOGLE_TOKEN_URL": self.token_url,
            "PAI_GOOGLE_REVOKE_URL": self.revoke_url,
            "PAI_GOOGLE_USERINFO_URL": self.userinfo_url,
            "PAI_GMAIL_DISCOVERY_URL": self.discovery_url,
        }

    # ------------------------------------------------------------ mailbox helpers for tests

    def add_account(self, email: str) -> Mailbox:
        """The account's mailbox, made empty if it has none yet."""
        with self.lock:
            if email not in self.mailboxes:
                self.mailboxes[email] = Mailbox(email, self._next_history_id())
            return self.mailboxes[email]

    def add_message(
        self,
        email: str,
        raw: bytes,
        label_ids: Iterable[str] = DEFAULT_LABELS,
        thread_id: str | None = None,
        internal_date: int | None = None,
    ) -> str:
        """Deliver ``raw`` to the mailbox; returns the Gmail message id. Without ``thread_id`` it joins the
        thread of a message its In-Reply-To / References name, or starts one. ``internal_date`` (epoch ms)
        defaults to now, strictly after the previous message's."""
        with self.lock:
            box = self.add_account(email)
            self._seq += 1
            if internal_date is None:
                internal_date = max(int(time.time() * 1000), self._last_internal_date + 1)
                self._last_internal_date = internal_date
            message_id = f"{(internal_date << 20) + (self._seq & 0xFFFFF):x}"
            while message_id in box.messages:
                message_id = f"{int(message_id, 16) + 1:x}"
            headers = BytesHeaderParser(policy=email_policy.compat32).parsebytes(raw)
            own = _angle_ids(headers.get("Message-ID", ""))
            related = _angle_ids(f"{headers.get('In-Reply-To', '')} {headers.get('References', '')}")
            if thread_id is None:
                thread_id = next(
                    (box.threads_by_message_id[r] for r in related if r in box.threads_by_message_id),
                    message_id,
                )
            history_id = self._next_history_id()
            message = StoredMessage(
                message_id,
                thread_id,
                list(dict.fromkeys(label_ids)),
                raw,
                internal_date,
                history_id,
                self._seq,
            )
            box.messages[message_id] = message
            for header_id in own:
                box.threads_by_message_id.setdefault(header_id, thread_id)
            self._record(box, history_id, message, {"messageAdded": []})
            return message_id

    def delete_message(self, email: str, message_id: str) -> None:
        """Delete for good (not trash: that is ``modify_labels(..., add=["TRASH"])``)."""
        with self.lock:
            box = self.mailboxes[email]
            message = box.messages.pop(message_id)
            self._record(box, self._next_history_id(), message, {"messageDeleted": []})

    def modify_labels(
        self, email: str, message_id: str, add: Iterable[str] = (), remove: Iterable[str] = ()
    ) -> None:
        """Change labels as the user would; only real changes make a history record."""
        with self.lock:
            box = self.mailboxes[email]
            message = box.messages[message_id]
            added = [label for label in dict.fromkeys(add) if label not in message.label_ids]
            removed = [
                label for label in dict.fromkeys(remove) if label in message.label_ids and label not in added
            ]
            if not added and not removed:
                return
            message.label_ids = [label for label in message.label_ids if label not in removed] + added
            message.history_id = self._next_history_id()
            changes = {"labelAdded": added, "labelRemoved": removed}
            self._record(box, message.history_id, message, {k: v for k, v in changes.items() if v})

    def expire_history_before(self, history_id: int | str, email: str | None = None) -> None:
        """Drop history older than ``history_id`` (all mailboxes, or one): an older startHistoryId is 404,
        as when Gmail no longer has it and a client must do a full sync."""
        with self.lock:
            floor = int(history_id)
            for box in [self.mailboxes[email]] if email else self.mailboxes.values():
                box.history_floor = max(box.history_floor, floor)
                box.history = [r for r in box.history if r.id >= floor]

    def history_id(self, email: str) -> int:
        """The mailbox's current history id (what getProfile answers)."""
        with self.lock:
            return self.mailboxes[email].history_id

    def _next_history_id(self) -> int:
        self._history_counter += HISTORY_STEP
        return self._history_counter

    @staticmethod
    def _record(box: Mailbox, history_id: int, message: StoredMessage, changes: dict[str, list[str]]) -> None:
        box.history.append(HistoryRecord(history_id, message.ref(), changes))
        box.history_id = history_id

    # ------------------------------------------------------------ OAuth helpers and fault knobs

    def consent(self, email: str, *, deny: bool = False, scopes: Iterable[str] | None = None) -> None:
        """Who the next consent screen is answered by, and how: refuse, or grant only ``scopes``."""
        with self.lock:
            self.add_account(email)
            self.consenting_email = email
            self.consent_denied = deny
            self.granted_scopes = None if scopes is None else list(scopes)

    def issue_tokens(
        self, email: str, scopes: Iterable[str] = (GMAIL_READONLY,), *, offline: bool = True
    ) -> dict[str, Any]:
        """A token response as after a completed consent, without walking the code flow."""
        with self.lock:
            self.add_account(email)
            refresh = f"1//{secrets.token_urlsafe(48)}" if offline else None
            grant = Grant(email, self.client_id, _normalize_scopes(" ".join(scopes)), refresh)
            return self._mint(grant, with_refresh=True)

    def expire_access_tokens(self) -> None:
        """Every access token issued so far is now expired (401); refresh tokens still work."""
        with self.lock:
            for token in self._access.values():
                token.expires_at = 0.0

    def revoke_refresh_tokens(self, email: str) -> None:
        """The user removed our access in their Google account: refresh is invalid_grant, tokens 401."""
        with self.lock:
            for grant in self._refresh.values():
                if grant.email == email:
                    grant.revoked = True
            for token in self._access.values():
                if token.grant.email == email:
                    token.grant.revoked = True

    def fail_next(self, count: int, status: int = 503, retry_after: float | str | None = None) -> None:
        """The next ``count`` Gmail API calls answer ``status`` with Google's error body (and Retry-After)."""
        with self.lock:
            header = None if retry_after is None else str(retry_after)
            self._faults.extend((status, header) for _ in range(count))

    # ------------------------------------------------------------ app

    def _build_app(self) -> Starlette:
        users = "/gmail/v1/users/{userId}"
        routes = [
            self._route("/o/oauth2/v2/auth", "auth", self._authorize, "GET"),
            self._route("/token", "token", self._token, "POST"),
            self._route("/revoke", "revoke", self._revoke, "POST"),
            self._route("/oauth2/v3/userinfo", "userinfo", self._userinfo, "GET"),
            self._route("/.well-known/openid-configuration", "openid-configuration", self._openid, "GET"),
            self._route("/discovery/v1/apis/gmail/v1/rest", "discovery", self._discovery, "GET"),
            self._gmail_route(f"{users}/profile", "getProfile", self._profile),
            self._gmail_route(f"{users}/messages", "messages.list", self._list_messages),
            self._gmail_route(f"{users}/messages/{{id}}", "messages.get", self._get_message),
            self._gmail_route(
                f"{users}/messages/{{messageId}}/attachments/{{id}}", "attachments.get", self._attachment
            ),
            self._gmail_route(f"{users}/history", "history.list", self._list_history),
        ]

        async def not_found(request: Request, exc: Exception) -> Response:
            status = getattr(exc, "status_code", 404)
            return google_error(status, f"Method not found: {request.method} {request.url.path}")

        return Starlette(routes=routes, exception_handlers={404: not_found, 405: not_found})

    def _route(
        self, path: str, name: str, handler: Callable[[Request, dict[str, str]], Response], method: str
    ) -> Route:
        async def endpoint(request: Request) -> Response:
            with self.lock:
                self.counters.calls[name] += 1
            params = dict(request.query_params)
            if method == "POST":
                params.update(await _form(request))
            await self._delay()
            with self.lock:
                return handler(request, params)

        return Route(path, endpoint, methods=[method])

    def _gmail_route(
        self, path: str, name: str, handler: Callable[[Mailbox, Request, Grant], dict[str, Any]]
    ) -> Route:
        async def endpoint(request: Request) -> Response:
            with self.lock:
                self.counters.calls[name] += 1
                self.counters.requests.append(f"{request.method} {request.url.path}?{request.url.query}")
            await self._delay()
            with self.lock:
                try:
                    grant = self._admit(request, name)
                    response: Response = JSONResponse(handler(self.mailboxes[grant.email], request, grant))
                except Reject as rejected:
                    response = rejected.response
                self.counters.statuses[response.status_code] += 1
                self.counters.rate_limited += int(response.status_code == 429)
                return response

        return Route(path, endpoint, methods=["GET"])

    async def _delay(self) -> None:
        if self.latency_seconds > 0:
            await asyncio.sleep(self.latency_seconds)

    def _admit(self, request: Request, name: str) -> Grant:
        """Injected fault, then authentication, scope, userId and quota, in that order."""
        if self._faults:
            status, retry_after = self._faults.popleft()
            headers = {"Retry-After": retry_after} if retry_after is not None else None
            raise Reject(google_error(status, headers=headers))
        token = self._bearer(request)
        if token is None:
            raise Reject(google_error(401))
        grant = token.grant
        if not GMAIL_SCOPES & set(grant.scopes):
            message = "Request had insufficient authentication scopes."
            raise Reject(google_error(403, message, "insufficientPermissions"))
        if request.path_params["userId"] not in ("me", grant.email):
            raise Reject(google_error(403, f"Delegation denied for {grant.email}"))
        self.add_account(grant.email)
        self._charge(grant.email, COSTS[name])
        return grant

    def _charge(self, email: str, cost: int) -> None:
        """A token bucket per user, ``quota_units_per_second`` deep (at least one call's worth)."""
        rate = self.quota_units_per_second
        if rate is not None:
            now = time.monotonic()
            capacity = max(rate, max(COSTS.values()))
            old_rate, units, at = self._buckets.get(email, (rate, capacity, now))
            units = capacity if old_rate != rate else min(capacity, units + (now - at) * rate)
            if units < cost:
                self._buckets[email] = (rate, units, now)
                wait = max(1, math.ceil((cost - units) / rate))
                when = (datetime.now(UTC) + timedelta(seconds=wait)).isoformat(timespec="milliseconds")
                message = f"User-rate limit exceeded.  Retry after {when.replace('+00:00', 'Z')}"
                raise Reject(google_error(429, message, headers={"Retry-After": str(wait)}))
            self._buckets[email] = (rate, units - cost, now)
        self.counters.quota_units[email] += cost

    def _bearer(self, request: Request) -> AccessToken | None:
        scheme, _, value = request.headers.get("authorization", "").partition(" ")
        token = self._access.get(value.strip()) if scheme.lower() == "bearer" else None
        return token if token is not None and token.valid else None

    # ------------------------------------------------------------ OAuth endpoints

    def _authorize(self, request: Request, params: dict[str, str]) -> Response:
        for name in ("client_id", "redirect_uri", "response_type", "scope"):
            if not params.get(name):
                return oauth_error("invalid_request", f"Required parameter is missing: {name}")
        if params["client_id"] != self.client_id:
            return oauth_error("invalid_client", "The OAuth client was not found.", 401)
        redirect_uri = params["redirect_uri"]
        if self.redirect_uris is not None and redirect_uri not in self.redirect_uris:
            return oauth_error("redirect_uri_mismatch", f"Redirect URI not registered: {redirect_uri}")
        if params["response_type"] != "code":
            return oauth_error(
                "unsupported_response_type", f"Invalid response_type: {params['response_type']}"
            )
        challenge = params.get("code_challenge")
        method = params.get("code_challenge_method") or ("plain" if challenge else None)
        if method is not None and (
            method not in ("S256", "plain")
            or not challenge
            or not re.fullmatch(r"[\w.~-]{43,128}", challenge)
        ):
            return oauth_error("invalid_request", "Invalid code_challenge or code_challenge_method.")
        access_type = params.get("access_type", "online")
        if access_type not in ("online", "offline"):
            return oauth_error("invalid_request", f"Invalid access_type: {access_type}")
        state = {"state": params["state"]} if "state" in params else {}
        if self.consent_denied:
            return RedirectResponse(_with_query(redirect_uri, {"error": "access_denied", **state}), 302)
        requested = _normalize_scopes(params["scope"])
        allowed = (
            None if self.granted_scopes is None else set(_normalize_scopes(" ".join(self.granted_scopes)))
        )
        scopes = [s for s in requested if allowed is None or s in allowed]
        email = self.consenting_email
        self.add_account(email)
        code = f"4/0A{secrets.token_urlsafe(60)}"
        self._codes[code] = AuthCode(
            params["client_id"],
            redirect_uri,
            email,
            scopes,
            challenge,
            method,
            access_type == "offline",
            params.get("nonce"),
            time.monotonic() + 600,
        )
        query = {**state, "code": code, "scope": " ".join(scopes), "authuser": "0", "prompt": "consent"}
        return RedirectResponse(_with_query(redirect_uri, query), 302)

    def _token(self, request: Request, params: dict[str, str]) -> Response:
        client_id, client_secret = _basic_auth(request) or (
            params.get("client_id"),
            params.get("client_secret"),
        )
        if client_id != self.client_id or client_secret != self.client_secret:
            return oauth_error("invalid_client", "Unauthorized", 401)
        grant_type = params.get("grant_type", "")
        if grant_type == "authorization_code":
            return self._redeem_code(params, client_id)
        if grant_type == "refresh_token":
            grant = self._refresh.get(params.get("refresh_token", ""))
            if grant is None or grant.revoked or grant.client_id != client_id:
                return oauth_error("invalid_grant", "Token has been expired or revoked.")
            self.counters.refresh_grants[grant.email] += 1
            return JSONResponse(self._mint(grant, with_refresh=False))
        return oauth_error("unsupported_grant_type", f"Invalid grant_type: {grant_type}")

    def _redeem_code(self, params: dict[str, str], client_id: str) -> Response:
        code = self._codes.get(params.get("code", ""))
        if code is None:
            return oauth_error("invalid_grant", "Malformed auth code.")
        if code.used or code.expires_at < time.monotonic() or code.client_id != client_id:
            return oauth_error("invalid_grant", "Bad Request")
        if params.get("redirect_uri") != code.redirect_uri:
            return oauth_error("redirect_uri_mismatch", "Bad Request")
        verifier = params.get("code_verifier")
        if code.challenge is not None:
            if not verifier:
                return oauth_error("invalid_grant", "Missing code verifier.")
            if not pkce_matches(verifier, code.challenge, code.method or "plain"):
                return oauth_error("invalid_grant", "Invalid code verifier.")
        code.used = True
        refresh = f"1//{secrets.token_urlsafe(48)}" if code.offline else None
        self.counters.code_grants[code.email] += 1
        return JSONResponse(self._mint(Grant(code.email, client_id, code.scopes, refresh), True, code.nonce))

    def _mint(self, grant: Grant, with_refresh: bool, nonce: str | None = None) -> dict[str, Any]:
        token = f"ya29.{secrets.token_urlsafe(48)}"
        self._access[token] = AccessToken(grant, time.monotonic() + self.access_token_ttl)
        body: dict[str, Any] = {
            "access_token": token,
            "expires_in": self.access_token_ttl,
            "scope": " ".join(grant.scopes),
            "token_type": "Bearer",
        }
        if grant.refresh_token is not None:
            self._refresh[grant.refresh_token] = grant
            if with_refresh:
                body["refresh_token"] = grant.refresh_token
        if "openid" in grant.scopes:
            body["id_token"] = self._id_token(grant, nonce)
        return body

    def _id_token(self, grant: Grant, nonce: str | None) -> str:
        """A JWT with Google's claims; its signature is fake (nothing here can hold Google's keys)."""
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": "https://accounts.google.com",
            "azp": grant.client_id,
            "aud": grant.client_id,
            "sub": google_sub(grant.email),
            "iat": now,
            "exp": now + 3600,
        }
        if USERINFO_EMAIL in grant.scopes:
            claims |= {"email": grant.email, "email_verified": True}
        if nonce:
            claims["nonce"] = nonce
        parts = [{"alg": "RS256", "kid": "gmail-stub", "typ": "JWT"}, claims]
        encoded = [base64.urlsafe_b64encode(json.dumps(p).encode()).rstrip(b"=").decode() for p in parts]
        return ".".join([*encoded, "c3R1Yi1zaWduYXR1cmU"])

    def _revoke(self, request: Request, params: dict[str, str]) -> Response:
        token = params.get("token", "")
        grant = self._refresh.get(token) or (self._access[token].grant if token in self._access else None)
        if grant is None or grant.revoked:
            return oauth_error("invalid_token", "Token expired or revoked")
        grant.revoked = True  # Google revokes the whole grant: the refresh token and its access tokens
        return JSONResponse({})

    def _userinfo(self, request: Request, params: dict[str, str]) -> Response:
        token = self._bearer(request)
        if token is None:
            response = oauth_error("invalid_request", "Invalid Credentials", 401)
            response.headers["WWW-Authenticate"] = (
                'Bearer realm="https://accounts.google.com/", error="invalid_token"'
            )
            return response
        body: dict[str, Any] = {"sub": google_sub(token.grant.email)}
        if USERINFO_EMAIL in token.grant.scopes:
            body |= {"email": token.grant.email, "email_verified": True}
        return JSONResponse(body)

    def _openid(self, request: Request, params: dict[str, str]) -> Response:
        return JSONResponse(
            {
                "issuer": "https://accounts.google.com",
                "authorization_endpoint": self.auth_url,
                "token_endpoint": self.token_url,
                "userinfo_endpoint": self.userinfo_url,
                "revocation_endpoint": self.revoke_url,
                "response_types_supported": ["code"],
                "code_challenge_methods_supported": ["plain", "S256"],
                "grant_types_supported": ["authorization_code", "refresh_token"],
                "scopes_supported": ["openid", "email", "profile"],
            }
        )

    def _discovery(self, request: Request, params: dict[str, str]) -> Response:
        return JSONResponse(discovery_document(f"{self.base_url}/"))

    # ------------------------------------------------------------ Gmail endpoints

    def _profile(self, box: Mailbox, request: Request, grant: Grant) -> dict[str, Any]:
        return {
            "emailAddress": box.email,
            "messagesTotal": len(box.messages),
            "threadsTotal": len({m.thread_id for m in box.messages.values()}),
            "historyId": str(box.history_id),
        }

    def _list_messages(self, box: Mailbox, request: Request, grant: Grant) -> dict[str, Any]:
        query = request.query_params
        limit = _int_param(query, "maxResults", 100, 500)
        q = query.get("q", "")
        if q and _metadata_only(grant):
            raise Reject(google_error(403, "Metadata scope does not support 'q' parameter"))
        terms = _parse_query(q)
        label_ids = query.getlist("labelIds")
        shown = {label.upper() for label in label_ids} | {
            _term_label(op, value) for negated, op, value in terms if not negated and op in ("in", "label")
        }
        hidden = (
            set()
            if _true(query.get("includeSpamTrash")) or "ANYWHERE" in shown
            else {"SPAM", "TRASH"} - shown
        )
        matches = [
            m
            for m in sorted(box.messages.values(), key=lambda m: m.sort_key, reverse=True)
            if all(label in m.label_ids for label in label_ids)
            and not hidden & set(m.label_ids)
            and all(_term_matches(m, op, value) != negated for negated, op, value in terms)
        ]
        total = len(matches)
        if token := query.get("pageToken"):
            cursor = self._page_cursor(token, "messages.list", box.email)
            matches = [m for m in matches if m.sort_key < cursor]
        page = matches[:limit]
        body: dict[str, Any] = {}
        if page:
            body["messages"] = [m.ref(labels=False) for m in page]
        if len(matches) > limit:
            body["nextPageToken"] = self._new_page_token("messages.list", box.email, page[-1].sort_key)
        body["resultSizeEstimate"] = total
        return body

    def _get_message(self, box: Mailbox, request: Request, grant: Grant) -> dict[str, Any]:
        message = _find(box, request.path_params["id"])
        fmt = request.query_params.get("format", "full").lower()
        if fmt not in ("full", "raw", "metadata", "minimal"):
            raise Reject(google_error(400, f"Invalid value at 'format' ({fmt})"))
        if fmt in ("full", "raw") and _metadata_only(grant):
            raise Reject(google_error(403, f"Metadata scope doesn't allow format {fmt.upper()}"))
        body: dict[str, Any] = message.ref()
        body["snippet"] = snippet(message.parsed)
        if fmt == "full":
            body["payload"] = message_part(message.parsed, message.id, decode=self.decode_headers)
        elif fmt == "metadata":
            wanted = {h.lower() for h in request.query_params.getlist("metadataHeaders")}
            headers = _part_headers(message.parsed, self.decode_headers)
            body["payload"] = {
                "partId": "",
                "mimeType": message.parsed.get_content_type(),
                "filename": "",
                "headers": [h for h in headers if not wanted or h["name"].lower() in wanted],
            }
        body |= {
            "sizeEstimate": len(message.raw),
            "historyId": str(message.history_id),
            "internalDate": str(message.internal_date),
        }
        if fmt == "raw":
            body["raw"] = b64url(message.raw)
        return body

    def _attachment(self, box: Mailbox, request: Request, grant: Grant) -> dict[str, Any]:
        message = _find(box, request.path_params["messageId"])
        wanted = request.path_params["id"]
        for part_id, part in _numbered_parts(message.parsed):
            if attachment_id(message.id, part_id) == wanted:
                data = leaf_bytes(part)
                return {"size": len(data), "data": b64url(data)}
        raise Reject(google_error(400, "Invalid attachment token"))

    def _list_history(self, box: Mailbox, request: Request, grant: Grant) -> dict[str, Any]:
        query = request.query_params
        raw_start = query.get("startHistoryId")
        if not raw_start:
            raise Reject(google_error(400, "Missing required parameter: startHistoryId", "required"))
        if not raw_start.isdigit():
            raise Reject(google_error(400, "Invalid startHistoryId"))
        start = int(raw_start)
        if start < box.history_floor:
            raise Reject(google_error(404))
        types = set(query.getlist("historyTypes"))
        if unknown := types - HISTORY_TYPES.keys():
            raise Reject(google_error(400, f"Invalid value at 'history_types' ({sorted(unknown)[0]})"))
        limit = _int_param(query, "maxResults", 100, 500)
        label = query.get("labelId")
        if token := query.get("pageToken"):
            start = self._page_cursor(token, "history.list", box.email)
        records = [
            (record.id, shown)
            for record in box.history
            if record.id > start
            and (
                label is None
                or label in record.message.get("labelIds", [])
                or any(label in v for v in record.changes.values())
            )
            and (shown := record.to_json(types)) is not None
        ]
        body: dict[str, Any] = {}
        if records[:limit]:
            body["history"] = [shown for _, shown in records[:limit]]
        if len(records) > limit:
            body["nextPageToken"] = self._new_page_token("history.list", box.email, records[limit - 1][0])
        body["historyId"] = str(box.history_id)
        return body

    def _new_page_token(self, endpoint: str, email: str, cursor: Any) -> str:
        token = f"{secrets.randbelow(10**20):020d}"
        self._page_tokens[token] = (endpoint, email, cursor)
        return token

    def _page_cursor(self, token: str, endpoint: str, email: str) -> Any:
        found = self._page_tokens.get(token)
        if found is None or found[:2] != (endpoint, email):
            raise Reject(google_error(400, "Invalid pageToken"))
        return found[2]


# ---------------------------------------------------------------- request helpers


async def _form(request: Request) -> dict[str, str]:
    body = await request.body()
    if request.headers.get("content-type", "").startswith("application/json"):
        try:
            data = json.loads(body)
        except ValueError:
            return {}
        return {k: str(v) for k, v in data.items()} if isinstance(data, dict) else {}
    return dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))


def _basic_auth(request: Request) -> tuple[str, str] | None:
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        client_id, _, secret = base64.b64decode(value).decode().partition(":")
    except ValueError:
        return None
    return unquote(client_id), unquote(secret)


def _with_query(url: str, params: dict[str, str]) -> str:
    parts = urlsplit(url)
    query = "&".join(q for q in (parts.query, urlencode(params)) if q)
    return urlunsplit(parts._replace(query=query))


def _normalize_scopes(scope: str) -> list[str]:
    return list(dict.fromkeys(_SCOPE_ALIASES.get(s, s) for s in scope.split()))


def pkce_matches(verifier: str, challenge: str, method: str) -> bool:
    """RFC 7636: S256 compares the unpadded base64url SHA-256 of the verifier."""
    if not re.fullmatch(r"[\w.~-]{43,128}", verifier):
        return False
    if method == "S256":
        digest = hashlib.sha256(verifier.encode()).digest()
        return secrets.compare_digest(base64.urlsafe_b64encode(digest).rstrip(b"=").decode(), challenge)
    return secrets.compare_digest(verifier, challenge)


def google_sub(email: str) -> str:
    """A stable 21-digit Google account id for ``email``."""
    return "1" + str(int.from_bytes(hashlib.sha256(email.lower().encode()).digest()[:8], "big")).zfill(20)


def _metadata_only(grant: Grant) -> bool:
    return set(grant.scopes) & GMAIL_SCOPES == {GMAIL_METADATA}


def _true(value: str | None) -> bool:
    return (value or "").lower() in ("true", "1")


def _int_param(query: Any, name: str, default: int, most: int) -> int:
    value = query.get(name)
    if value is None:
        return default
    if not value.isdigit():
        raise Reject(google_error(400, f"Invalid value '{value}' for {name}"))
    return min(max(int(value), 1), most)


def _find(box: Mailbox, message_id: str) -> StoredMessage:
    if not re.fullmatch(r"[0-9a-fA-F]{1,32}", message_id):
        raise Reject(google_error(400, "Invalid id value"))
    message = box.messages.get(message_id.lower())
    if message is None:
        raise Reject(google_error(404))
    return message


def _angle_ids(value: str) -> list[str]:
    return re.findall(r"<[^<>\s]+>", value)


# ---------------------------------------------------------------- search (q)

_TERM = re.compile(r'(-?)(?:([A-Za-z_]+):)?("[^"]*"|\S+)')
_LABEL_WORDS = {"draft": "DRAFT", "drafts": "DRAFT", "chats": "CHAT", "read": "UNREAD"}


def _parse_query(q: str) -> list[tuple[bool, str, str]]:
    """Gmail's search box syntax, the part a sync uses: in: label: is: category: has:attachment,
    after: before: newer_than: older_than:, from: to: cc: subject:, free words; ``-`` negates."""
    return [(neg == "-", op.lower(), value.strip('"')) for neg, op, value in _TERM.findall(q)]


def _term_label(op: str, value: str) -> str:
    if op == "category":
        return f"CATEGORY_{value.upper()}"
    return _LABEL_WORDS.get(value.lower(), value.upper().replace(" ", "_").replace("-", "_"))


def _term_matches(message: StoredMessage, op: str, value: str) -> bool:
    labels = {label.upper() for label in message.label_ids}
    if op in ("in", "label", "is", "category"):
        if value.lower() == "anywhere":
            return True
        return (_term_label(op, value) in labels) != (op == "is" and value.lower() == "read")
    if op in ("after", "before", "newer_than", "older_than"):
        after = op in ("after", "newer_than")
        return (message.internal_date >= _query_time(op, value)) == after
    if op == "has":
        return value.lower() == "attachment" and any(part.get_filename() for part in message.parsed.walk())
    if op in _SEARCHED:
        return value.lower() in " ".join(header_text(v) for v in message.parsed.get_all(op, [])).lower()
    word = f"{op}:{value}" if op else value
    return word.lower() in message.search_text()


def _query_time(op: str, value: str) -> int:
    now = int(time.time() * 1000)
    if op in ("newer_than", "older_than"):
        found = re.fullmatch(r"(\d+)([hdmy])", value.lower())
        if found is None:
            raise Reject(google_error(400, f"Invalid query: {op}:{value}"))
        unit = {"h": 3600, "d": 86400, "m": 30 * 86400, "y": 365 * 86400}[found[2]]
        return now - int(found[1]) * unit * 1000
    if value.isdigit():
        return int(value) * 1000
    found = re.fullmatch(r"(\d{4})[/-](\d{1,2})[/-](\d{1,2})", value)
    if found is None:
        raise Reject(google_error(400, f"Invalid query: {op}:{value}"))
    return int(datetime(int(found[1]), int(found[2]), int(found[3]), tzinfo=UTC).timestamp() * 1000)


# ---------------------------------------------------------------- MIME -> Gmail's Message resource


def header_text(value: Any, decode: bool = True) -> str:
    """A header value as Gmail shows it: unfolded, raw 8-bit bytes read as UTF-8 (else Latin-1), and
    RFC 2047 encoded-words decoded."""
    text = str(value)
    if any("\udc80" <= ch <= "\udcff" for ch in text):  # undecodable bytes kept by surrogateescape
        raw = text.encode("ascii", "surrogateescape")
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            text = raw.decode("latin-1")
    text = re.sub(r"\r?\n(?=[ \t])", "", text).strip()
    if decode and "=?" in text:
        try:
            return str(make_header(decode_header(text)))
        except (LookupError, UnicodeError, ValueError):
            return text
    return text


def _part_headers(part: Message, decode: bool) -> list[dict[str, str]]:
    return [{"name": name, "value": header_text(value, decode)} for name, value in part.raw_items()]


def leaf_bytes(part: Message) -> bytes:
    """A part's content with its transfer encoding undone (not its charset: Gmail keeps the bytes)."""
    if part.get_content_type() == "message/rfc822" and part.is_multipart():
        inner = part.get_payload(0)
        return inner.as_bytes() if isinstance(inner, Message) else b""
    data = part.get_payload(decode=True)
    return data if isinstance(data, bytes) else b""


def _children(part: Message) -> list[Message] | None:
    if part.get_content_maintype() == "multipart" and part.is_multipart():
        return [p for p in part.get_payload() if isinstance(p, Message)]
    return None


def _numbered_parts(part: Message, part_id: str = "") -> Iterable[tuple[str, Message]]:
    """Every part with Gmail's partId: "" for the message, then "0", "1", "0.1"..."""
    yield part_id, part
    for i, child in enumerate(_children(part) or []):
        yield from _numbered_parts(child, f"{part_id}.{i}" if part_id else str(i))


def attachment_id(message_id: str, part_id: str) -> str:
    """An opaque, long attachment id like Gmail's, stable for one part of one message."""
    digest = hashlib.sha512(f"{message_id}/{part_id}".encode()).digest()
    return "ANGjdJ" + base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def _filename(part: Message) -> str:
    try:
        name = part.get_filename()
    except (LookupError, ValueError):
        return ""
    return header_text(name) if name else ""


def message_part(part: Message, message_id: str, part_id: str = "", decode: bool = True) -> dict[str, Any]:
    """Gmail's MessagePart for ``part`` and below: body data inline, or only an attachmentId for parts
    with a filename (fetched with messages.attachments.get)."""
    filename = _filename(part)
    out: dict[str, Any] = {
        "partId": part_id,
        "mimeType": part.get_content_type(),
        "filename": filename,
        "headers": _part_headers(part, decode),
    }
    children = _children(part)
    if children is not None:
        out["body"] = {"size": 0}
        out["parts"] = [
            message_part(child, message_id, f"{part_id}.{i}" if part_id else str(i), decode)
            for i, child in enumerate(children)
        ]
        return out
    data = leaf_bytes(part)
    if filename:
        out["body"] = {"attachmentId": attachment_id(message_id, part_id), "size": len(data)}
    else:
        out["body"] = {"size": len(data), "data": b64url(data)} if data else {"size": 0}
    return out


def decode_text(part: Message) -> str:
    data = leaf_bytes(part)
    charset = part.get_content_charset() or "us-ascii"
    for candidate in (charset, "utf-8") if charset in ("us-ascii", "ascii") else (charset,):
        try:
            return data.decode(candidate)
        except (LookupError, UnicodeDecodeError):
            continue
    return data.decode("latin-1")


_HIDDEN_TAGS = ("script", "style", "head")


class _TextOfHtml(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.chunks: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag: str, attrs: Any) -> None:
        if tag in _HIDDEN_TAGS:
            self._skip += 1

    def handle_endtag(self, tag: str) -> None:
        if tag in _HIDDEN_TAGS and self._skip:
            self._skip -= 1

    def handle_data(self, data: str) -> None:
        if not self._skip:
            self.chunks.append(data)


def html_to_text(markup: str) -> str:
    parser = _TextOfHtml()
    parser.feed(markup)
    parser.close()
    return " ".join(parser.chunks)


def body_text(message: Message) -> str:
    """The first text/plain body part, else the first text/html one as text."""
    leaves = [p for p in message.walk() if not p.is_multipart() and not _filename(p)]
    for subtype in ("plain", "html"):
        for part in leaves:
            if part.get_content_type() == f"text/{subtype}":
                text = decode_text(part)
                return text if subtype == "plain" else html_to_text(text)
    return ""


def snippet(message: Message, length: int = 200) -> str:
    """Gmail's snippet: the start of the body text, whitespace collapsed, HTML-escaped as Gmail does."""
    text = " ".join(body_text(message).split())[:length].rstrip()
    for char, entity in (("&", "&amp;"), ("<", "&lt;"), (">", "&gt;"), ('"', "&quot;"), ("'", "&#39;")):
        text = text.replace(char, entity)
    return text


# ---------------------------------------------------------------- discovery document


def _param(description: str, type_: str = "string", location: str = "query", **extra: Any) -> dict[str, Any]:
    return {"description": description, "type": type_, "location": location, **extra}


_QUERY_PARAMETERS = {
    "maxResults": _param("Maximum number of results to return.", "integer", format="uint32", default="100"),
    "pageToken": _param("Page token to retrieve a specific page of results in the list."),
    "q": _param("Only return messages matching the specified query, as in the Gmail search box."),
    "labelIds": _param("Only return messages with all of these label IDs.", repeated=True),
    "includeSpamTrash": _param("Include messages from SPAM and TRASH.", "boolean", default="false"),
    "format": _param(
        "The format to return the message in.", default="full", enum=["minimal", "full", "raw", "metadata"]
    ),
    "metadataHeaders": _param("With format METADATA, only include these headers.", repeated=True),
    "startHistoryId": _param("Returns history records after this id.", required=True, format="uint64"),
    "labelId": _param("Only return messages with a label matching the ID."),
    "historyTypes": _param("History types to be returned.", repeated=True, enum=list(HISTORY_TYPES)),
}
# discovery id below gmail.users -> (path below servicePath, response schema, query parameters, description)
_METHODS = {
    "getProfile": ("{userId}/profile", "Profile", [], "Gets the current user's Gmail profile."),
    "messages.list": (
        "{userId}/messages",
        "ListMessagesResponse",
        ["maxResults", "pageToken", "q", "labelIds", "includeSpamTrash"],
        "Lists the messages in the mailbox.",
    ),
    "messages.get": ("{userId}/messages/{id}", "Message", ["format", "metadataHeaders"], "Gets a message."),
    "messages.attachments.get": (
        "{userId}/messages/{messageId}/attachments/{id}",
        "MessagePartBody",
        [],
        "Gets a message attachment.",
    ),
    "history.list": (
        "{userId}/history",
        "ListHistoryResponse",
        ["startHistoryId", "maxResults", "pageToken", "labelId", "historyTypes"],
        "Lists the changes to the mailbox.",
    ),
}
# schema -> "field:type ...", type: s string, i int32, u64 / i64 64-bit ints as strings, b base64url,
# [t] array of t, anything else a schema $ref.
_SCHEMAS = {
    "Profile": "emailAddress:s messagesTotal:i threadsTotal:i historyId:u64",
    "ListMessagesResponse": "messages:[Message] nextPageToken:s resultSizeEstimate:i",
    "Message": "id:s threadId:s labelIds:[s] snippet:s historyId:u64 internalDate:i64 sizeEstimate:i raw:b"
    " payload:MessagePart",
    "MessagePart": "partId:s mimeType:s filename:s headers:[MessagePartHeader] body:MessagePartBody"
    " parts:[MessagePart]",
    "MessagePartHeader": "name:s value:s",
    "MessagePartBody": "attachmentId:s size:i data:b",
    "ListHistoryResponse": "history:[History] nextPageToken:s historyId:u64",
    "History": "id:u64 messages:[Message] messagesAdded:[HistoryMessageAdded]"
    " messagesDeleted:[HistoryMessageDeleted] labelsAdded:[HistoryLabelAdded]"
    " labelsRemoved:[HistoryLabelRemoved]",
    "HistoryMessageAdded": "message:Message",
    "HistoryMessageDeleted": "message:Message",
    "HistoryLabelAdded": "message:Message labelIds:[s]",
    "HistoryLabelRemoved": "message:Message labelIds:[s]",
}
_FIELD_TYPES = {
    "s": {"type": "string"},
    "i": {"type": "integer", "format": "int32"},
    "u64": {"type": "string", "format": "uint64"},
    "i64": {"type": "string", "format": "int64"},
    "b": {"type": "string", "format": "byte"},
}


def _field(type_: str) -> dict[str, Any]:
    if type_.startswith("["):
        return {"type": "array", "items": _field(type_[1:-1])}
    return dict(_FIELD_TYPES.get(type_) or {"$ref": type_})


def discovery_document(root_url: str) -> dict[str, Any]:
    """Google's discovery format for the methods this stub serves, so a discovery-built client (aiogoogle's
    ``GoogleAPI(document)``) calls the stub; written from the method list above, not Google's file."""
    users: dict[str, Any] = {}
    for name, (path, response, query, description) in _METHODS.items():
        *resources, verb = name.split(".")
        node = users
        for resource in resources:
            node = node.setdefault("resources", {}).setdefault(resource, {})
        path_params = re.findall(r"{(\w+)}", path)
        parameters = {
            p: _param(
                "The user's email address, or `me`." if p == "userId" else f"The {p}.",
                location="path",
                required=True,
            )
            for p in path_params
        } | {q: _QUERY_PARAMETERS[q] for q in query}
        node.setdefault("methods", {})[verb] = {
            "id": f"gmail.users.{name}",
            "path": path,
            "flatPath": path,
            "httpMethod": "GET",
            "description": description,
            "parameters": parameters,
            "parameterOrder": path_params,  # path parameters only: aiogoogle fills the path from this list
            "response": {"$ref": response},
            "scopes": sorted(
                GMAIL_SCOPES - ({GMAIL_METADATA} if name == "messages.attachments.get" else set())
            ),
        }
    return {
        "kind": "discovery#restDescription",
        "discoveryVersion": "v1",
        "id": "gmail:v1",
        "name": "gmail",
        "version": "v1",
        "title": "Gmail API (local stub)",
        "description": "The Gmail API methods a mailbox sync uses, served by tests/gmail_stub.py.",
        "protocol": "rest",
        "rootUrl": root_url,
        "servicePath": "gmail/v1/users/",
        "baseUrl": f"{root_url}gmail/v1/users/",
        "basePath": "/gmail/v1/users/",
        "batchPath": "batch/gmail/v1",
        "parameters": {
            "access_token": _param("OAuth access token."),
            "alt": _param("Data format for response.", default="json", enum=["json"]),
            "fields": _param("Selector specifying which fields to include in a partial response."),
            "key": _param("API key."),
            "oauth_token": _param("OAuth 2.0 token for the current user."),
            "prettyPrint": _param(
                "Returns response with indentations and line breaks.", "boolean", default="true"
            ),
            "quotaUser": _param("Available to use for quota purposes for server-side applications."),
        },
        "auth": {"oauth2": {"scopes": {scope: {"description": scope} for scope in sorted(GMAIL_SCOPES)}}},
        "schemas": {
            name: {
                "id": name,
                "type": "object",
                "properties": {f: _field(t) for f, _, t in (item.partition(":") for item in spec.split())},
            }
            for name, spec in _SCHEMAS.items()
        },
        "resources": {"users": users},
    }


# ---------------------------------------------------------------- MIME fixtures: real RFC 822 messages

SMTP = email_policy.SMTP  # CRLF line ends, as mail arrives
COMPAT_SMTP = email_policy.compat32.clone(linesep="\r\n")
FIXED_DATE = datetime(2024, 5, 17, 9, 30, tzinfo=UTC)


def _envelope(
    message: Message, subject: str | None, sender: str, to: str, date: datetime | None, message_id: str | None
) -> None:
    message["From"] = sender
    message["To"] = to
    if subject is not None:
        message["Subject"] = subject
    message["Date"] = format_datetime(date or FIXED_DATE)
    message["Message-ID"] = message_id or make_msgid(domain="mail.example.com")


def mime_plain(
    subject: str = "Hello",
    text: str = "Just a plain note.\n",
    *,
    sender: str = "Ada Lovelace <ada@example.com>",
    to: str = "alice@example.com",
    date: datetime | None = None,
    message_id: str | None = None,
    in_reply_to: str | None = None,
) -> bytes:
    """text/plain UTF-8; ``in_reply_to`` (a Message-ID) makes it a reply in that thread."""
    message = EmailMessage()
    _envelope(message, subject, sender, to, date, message_id)
    if in_reply_to:
        message["In-Reply-To"] = in_reply_to
        message["References"] = in_reply_to
    message.set_content(text)
    return message.as_bytes(policy=SMTP)


def mime_alternative(
    subject: str = "Quarterly numbers",
    text: str = "Revenue grew 12% this quarter.\n",
    html: str = "<html><body><p>Revenue grew <b>12%</b> this quarter.</p></body></html>\n",
    *,
    sender: str = "Ada Lovelace <ada@example.com>",
    to: str = "alice@example.com",
    date: datetime | None = None,
    message_id: str | None = None,
) -> bytes:
    """multipart/alternative: text/plain then text/html, both UTF-8."""
    message = EmailMessage()
    _envelope(message, subject, sender, to, date, message_id)
    message.set_content(text)
    message.add_alternative(html, subtype="html")
    return message.as_bytes(policy=SMTP)


def mime_html_only(
    subject: str = "Newsletter",
    html: str = (
        "<html><head><style>p{color:red}</style></head><body><h1>May news</h1>"
        "<p>Tickets &amp; dates for the summer fair are out.</p></body></html>\n"
    ),
    *,
    sender: str = "News <news@example.org>",
    to: str = "alice@example.com",
    date: datetime | None = None,
    message_id: str | None = None,
) -> bytes:
    """A single text/html part, no plain-text alternative."""
    message = EmailMessage()
    _envelope(message, subject, sender, to, date, message_id)
    message.set_content(html, subtype="html")
    return message.as_bytes(policy=SMTP)


LEGACY_TEXTS = {
    "iso-8859-1": "Café crème, naïve façade, Grüße.\n",
    "windows-1252": "Prix : 12 € \u2013 « café » crème.\n",
}


def mime_legacy_charset(
    charset: str = "iso-8859-1",
    text: str | None = None,
    *,
    subject: str = "Tarifs",
    cte: str = "quoted-printable",
    sender: str = "Boutique <shop@example.fr>",
    to: str = "alice@example.com",
    date: datetime | None = None,
    message_id: str | None = None,
) -> bytes:
    """text/plain in a non-UTF-8 charset (bytes encoded with it; ``cte`` may be ``8bit``)."""
    message = EmailMessage()
    _envelope(message, subject, sender, to, date, message_id)
    message.set_content(text or LEGACY_TEXTS[charset], charset=charset, cte=cte)
    return message.as_bytes(policy=SMTP)


def mime_encoded_headers(
    subject: str = "Grüße aus Köln 🎉",
    display_name: str = "Jürgen Müller",
    *,
    address: str = "juergen@example.de",
    text: str = "Bis bald!\n",
    to: str = "alice@example.com",
    date: datetime | None = None,
    message_id: str | None = None,
) -> bytes:
    """Subject as a UTF-8 B encoded-word, From display name as an ISO-8859-1 Q encoded-word."""
    message = MIMEText(text, "plain", "utf-8")
    encoded_subject = f"=?utf-8?b?{base64.b64encode(subject.encode()).decode()}?="
    encoded_name = Header(display_name, "iso-8859-1").encode()
    _envelope(message, encoded_subject, f"{encoded_name} <{address}>", to, date, message_id)
    return message.as_bytes(policy=COMPAT_SMTP)


@cache
def sample_pdf(text: str = "Invoice 2024-117: total due 1,250.00 EUR") -> bytes:
    """A real one-page PDF (tests/files.py makes it) with ``text`` in it."""
    from tests.files import pdf

    return pdf([text])


def mime_with_attachment(
    attachments: list[tuple[str, bytes, str]] | None = None,
    *,
    subject: str = "Invoice attached",
    text: str = "Please find the invoice attached.\n",
    html: str | None = "<p>Please find the invoice <i>attached</i>.</p>\n",
    sender: str = "Billing <billing@example.com>",
    to: str = "alice@example.com",
    date: datetime | None = None,
    message_id: str | None = None,
) -> bytes:
    """multipart/mixed: the body (alternative text + html, or text alone) then the attachments, given as
    (filename, content, mime type); by default a PDF and a TXT file."""
    if attachments is None:
        attachments = [
            ("invoice.pdf", sample_pdf(), "application/pdf"),
            ("notes.txt", b"Ship to: 3 Harbour Lane\n", "text/plain"),
        ]
    message = EmailMessage()
    _envelope(message, subject, sender, to, date, message_id)
    message.set_content(text)
    if html is not None:
        message.add_alternative(html, subtype="html")
    for filename, content, mime_type in attachments:
        maintype, _, subtype = mime_type.partition("/")
        message.add_attachment(content, maintype=maintype, subtype=subtype, filename=filename)
    return message.as_bytes(policy=SMTP)


def mime_broken_boundary() -> bytes:
    """multipart/mixed whose parts use a different boundary than declared and never close: the parser
    finds no parts and keeps the whole body as the preamble-ish text."""
    return (
        b"From: Broken Sender <broken@example.com>\r\n"
        b"To: alice@example.com\r\n"
        b"Subject: Broken boundary\r\n"
        b"Date: Fri, 17 May 2024 09:30:00 +0000\r\n"
        b"Message-ID: <broken-boundary@mail.example.com>\r\n"
        b"MIME-Version: 1.0\r\n"
        b'Content-Type: multipart/mixed; boundary="declared-boundary"\r\n'
        b"\r\n"
        b"--actual-boundary\r\n"
        b"Content-Type: text/plain; charset=utf-8\r\n"
        b"\r\n"
        b"The body survived a broken boundary.\r\n"
        b"--actual-boundary\r\n"
        b"Content-Type: application/octet-stream\r\n"
        b"Content-Transfer-Encoding: base64\r\n"
        b"\r\n"
        b"bm90IHJlYWxseSBiYXNlNjQ=!!!\r\n"
    )


def mime_missing_headers() -> bytes:
    """No From, Subject, Date, Message-ID, MIME-Version or Content-Type; bare LF line ends and a stray
    8-bit byte: what old or hand-rolled mailers send."""
    return b"To: alice@example.com\nX-Mailer: ancient\n\nNo headers to speak of. Caf\xe9 au lait.\n"
