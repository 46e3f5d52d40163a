"""Google OAuth and the Gmail API through aiogoogle, with the retries and pacing Gmail needs.

aiogoogle builds the Gmail client from its discovery document and speaks OAuth 2.0; its
endpoints come from settings so tests can point them at a local stand-in. Two things it lacks
are added here: PKCE (RFC 7636) on the authorization URL and the code exchange, and backoff
on Gmail's 429/5xx answers (tenacity, honouring ``Retry-After``). Calls are paced per account
to stay inside Gmail's per-user quota (``messages.get`` costs 5 units of 250 per second).
"""

import asyncio
import base64
import hashlib
import secrets
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import aiohttp
from aiogoogle import Aiogoogle
from aiogoogle.auth.creds import ClientCreds, UserCreds
from aiogoogle.auth.managers import Oauth2Manager
from aiogoogle.excs import HTTPError
from aiogoogle.models import Request
from aiogoogle.resource import GoogleAPI
from aiolimiter import AsyncLimiter
from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt, wait_exponential_jitter

from services.mail.settings import MailSettings

# Gmail quota units per method (developers.google.com/gmail/api/reference/quota).
COSTS = {"getProfile": 1, "messages.list": 5, "messages.get": 5, "history.list": 2}
RETRIED_STATUSES = frozenset({429, 500, 502, 503, 504})


class GoogleError(Exception):
    """Google answered with an error we do not retry (or retried too often)."""

    def __init__(self, status: int, reason: str) -> None:
        self.status = status
        super().__init__(f"Google answered {status}: {reason}")


class InvalidGrant(GoogleError):
    """The refresh token is revoked or expired: the user must connect the account again."""


class AccessTokenRejected(GoogleError):
    """401 on an API call: the access token is no longer valid (refresh and try once more)."""


class HistoryExpired(GoogleError):
    """``history.list`` 404: the stored history id is too old, a full sync is needed."""


@dataclass(frozen=True)
class Tokens:
    access_token: str
    refresh_token: str | None
    expires_at: datetime
    scopes: str


@dataclass(frozen=True)
class Pkce:
    verifier: str
    challenge: str

    @classmethod
    def new(cls) -> "Pkce":
        verifier = secrets.token_urlsafe(64)  # 86 characters, within RFC 7636's 43..128
        digest = hashlib.sha256(verifier.encode("ascii")).digest()
        return cls(verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii"))


class _PkceOauth2Manager(Oauth2Manager):
    """aiogoogle's OAuth manager, plus the PKCE verifier on the code exchange."""

    async def exchange_code(self, code: str, verifier: str) -> dict[str, Any]:
        request = self._build_user_creds_req(code, self.client_creds, "authorization_code")
        request.data["code_verifier"] = verifier
        return self._build_user_creds_from_res(await self._send_request(request))


class Google:
    """One per process: OAuth helpers and Gmail calls on behalf of a user's tokens."""

    def __init__(self, settings: MailSettings) -> None:
        self.settings = settings
        secret = settings.google_client_secret.get_secret_value() if settings.google_client_secret else ""
        self.client_creds = ClientCreds(
            client_id=settings.google_client_id or "",
            client_secret=secret,
            scopes=list(settings.oauth_scopes),
            redirect_uri=settings.oauth_redirect_uri,
        )
        self.oauth = _PkceOauth2Manager(client_creds=self.client_creds)
        self.oauth.openid_configs = {
            "authorization_endpoint": settings.google_auth_url,
            "token_endpoint": settings.google_token_url,
            "revocation_endpoint": settings.google_revoke_url,
            "userinfo_endpoint": settings.google_userinfo_url,
        }
        self._gmail: GoogleAPI | None = None
        self._discovery_lock = asyncio.Lock()

    # ------------------------------------------------------------ OAuth

    def authorization_url(self, state: str, pkce: Pkce) -> str:
        url = self.oauth.authorization_url(
            state=state, access_type="offline", include_granted_scopes=True, prompt="consent"
        )
        # aiogoogle knows no PKCE and leaves redirect_uri unencoded: rebuild the query properly.
        parts = urlsplit(url)
        query = dict(parse_qsl(parts.query, keep_blank_values=True))
        query |= {
            "redirect_uri": self.settings.oauth_redirect_uri,
            "code_challenge": pkce.challenge,
            "code_challenge_method": "S256",
        }
        return urlunsplit(parts._replace(query=urlencode(query)))

    async def exchange_code(self, code: str, verifier: str) -> Tokens:
        try:
            return _tokens(await self.oauth.exchange_code(code, verifier))
        except HTTPError as exc:
            raise _google_error(exc) from None

    async def refresh(self, refresh_token: str) -> Tokens:
        creds = UserCreds(refresh_token=refresh_token, expires_at=None)
        try:
            _, fresh = await self.oauth.refresh(creds, client_creds=self.client_creds)
        except HTTPError as exc:
            raise _google_error(exc) from None
        return _tokens(fresh)

    async def revoke(self, token: str) -> None:
        try:
            await self.oauth.revoke(UserCreds(access_token=token))
        except HTTPError as exc:
            raise _google_error(exc) from None

    async def email_address(self, access_token: str) -> str:
        """The account's address, from the userinfo endpoint (the ``email`` scope)."""
        request = self.oauth.authorize(
            Request("GET", self.settings.google_userinfo_url), {"access_token": access_token}
        )
        try:
            body = await self.oauth._send_request(request)
        except HTTPError as exc:
            raise _google_error(exc) from None
        if not isinstance(body, Mapping) or not body.get("email"):
            raise GoogleError(403, "the email scope was not granted")
        return str(body["email"]).lower()

    # ------------------------------------------------------------ Gmail

    async def gmail(self) -> GoogleAPI:
        """The Gmail API from its discovery document, fetched once per process."""
        async with self._discovery_lock:
            if self._gmail is None:
                timeout = aiohttp.ClientTimeout(total=self.settings.gmail_timeout_seconds)
                async with (
                    aiohttp.ClientSession(timeout=timeout) as session,
                    session.get(self.settings.gmail_discovery_url) as response,
                ):
                    response.raise_for_status()
                    self._gmail = GoogleAPI(await response.json(content_type=None))
            return self._gmail

    def session(self, access_token: str, refresh: "Refresher") -> "GmailSession":
        return GmailSession(self, access_token, refresh)


# Given the access token Google refused, returns a valid one (refreshing at most once).
Refresher = Callable[[str], Awaitable[str]]


class GmailSession:
    """Gmail calls for one account during one job: paced below the quota, retried on 429/5xx,
    and on a 401 given a fresh access token once (see :mod:`services.mail.tokens`)."""

    def __init__(self, google: Google, access_token: str, refresh: Refresher) -> None:
        self.google = google
        self.access_token = access_token
        self.refresh = refresh
        settings = google.settings
        self.limiter = AsyncLimiter(settings.gmail_quota_units_per_second, 1)
        self.client = Aiogoogle(client_creds=google.client_creds)
        self.client.oauth2 = google.oauth

    async def __aenter__(self) -> "GmailSession":
        await self.client.__aenter__()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.client.__aexit__(*exc)

    async def call(self, method: str, **params: Any) -> dict[str, Any]:
        """``method`` as in :data:`COSTS` (``messages.get``, ...), ``userId`` is ``me``."""
        try:
            return await self._call(method, params)
        except AccessTokenRejected:
            self.access_token = await self.refresh(self.access_token)
            return await self._call(method, params)

    async def _call(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        gmail = await self.google.gmail()
        resource: Any = gmail.users
        for name in method.split("."):
            resource = getattr(resource, name)
        settings = self.google.settings
        async for attempt in AsyncRetrying(
            retry=retry_if_exception(_retried),
            wait=_wait_retry_after(settings.gmail_backoff_max_seconds),
            stop=stop_after_attempt(settings.gmail_max_retries + 1),
            reraise=True,
        ):
            with attempt:
                await self.limiter.acquire(COSTS.get(method, 5))
                request = resource(userId="me", **params)
                request.timeout = settings.gmail_timeout_seconds
                creds = UserCreds(access_token=self.access_token, expires_at=_FAR_FUTURE)
                try:
                    return await self.client.as_user(request, user_creds=creds)
                except HTTPError as exc:
                    error = _google_error(exc)
                    if isinstance(error, GoogleError) and error.status == 404 and method == "history.list":
                        raise HistoryExpired(404, "startHistoryId is too old") from None
                    raise error from None
        raise AssertionError("unreachable")  # pragma: no cover


_FAR_FUTURE = (datetime.now(UTC) + timedelta(days=3650)).replace(tzinfo=None).isoformat()


class RetryableGoogleError(GoogleError):
    def __init__(self, status: int, reason: str, retry_after: float | None) -> None:
        super().__init__(status, reason)
        self.retry_after = retry_after


def _retried(exc: BaseException) -> bool:
    return isinstance(exc, RetryableGoogleError | aiohttp.ClientConnectionError | asyncio.TimeoutError)


class _wait_retry_after:
    """Exponential backoff with jitter, but never sooner than Google's ``Retry-After``."""

    def __init__(self, most: float) -> None:
        self.backoff = wait_exponential_jitter(initial=0.5, max=most)
        self.most = most

    def __call__(self, retry_state: Any) -> float:
        wait = self.backoff(retry_state)
        exc = retry_state.outcome.exception() if retry_state.outcome else None
        if isinstance(exc, RetryableGoogleError) and exc.retry_after is not None:
            wait = max(wait, min(exc.retry_after, self.most))
        return wait


def _google_error(exc: HTTPError) -> GoogleError:
    """A typed error out of aiogoogle's, with Google's reason but never a token."""
    res = exc.res
    status = res.status_code if res is not None else 0
    body = res.json if res is not None and isinstance(res.json, Mapping) else {}
    error = body.get("error")
    if isinstance(error, Mapping):  # Gmail API: {"error": {"code", "message", "errors": [...]}}
        reason = str(error.get("message") or error.get("status") or "")
        reasons = {str(e.get("reason")) for e in error.get("errors", []) if isinstance(e, Mapping)}
    else:  # OAuth: {"error": "invalid_grant", "error_description": ...}
        reason, reasons = str(error or ""), {str(error or "")}
    if "invalid_grant" in reasons:
        return InvalidGrant(status, "invalid_grant")
    if status == 401:
        return AccessTokenRejected(status, reason or "unauthenticated")
    if status in RETRIED_STATUSES or reasons & {"rateLimitExceeded", "userRateLimitExceeded"}:
        return RetryableGoogleError(status, reason, _retry_after(res.headers if res is not None else {}))
    return GoogleError(status, reason or "error")


def _retry_after(headers: Mapping[str, str]) -> float | None:
    value = headers.get("Retry-After") if headers else None
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:  # an HTTP date
        try:
            return max(0.0, (parsedate_to_datetime(value) - datetime.now(UTC)).total_seconds())
        except (TypeError, ValueError):
            return None


def _tokens(creds: Mapping[str, Any]) -> Tokens:
    expires_in = int(creds.get("expires_in") or 3600)
    scopes = creds.get("scopes") or []
    return Tokens(
        access_token=str(creds["access_token"]),
        refresh_token=creds.get("refresh_token"),
        # A minute early, so a token is not used in its last seconds.
        expires_at=datetime.now(UTC) + timedelta(seconds=max(0, expires_in - 60)),
        scopes=" ".join(scopes) if isinstance(scopes, list) else str(scopes),
    )
