"""Access-token verification shared by the gateway and every service (defence in depth).

Tokens are EdDSA (Ed25519) JWTs. Keys come from the auth service's JWKS (cached, refetched
when an unknown ``kid`` shows up, at most every few seconds), or from a static key set in
the auth service itself. A Redis marker per user revokes every token issued before it.
"""

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import httpx
import jwt
import structlog
from cachetools import LRUCache
from fastapi import Request
from redis.asyncio import Redis

from shared.errors import Unauthenticated

log = structlog.get_logger(__name__)

ALGORITHM = "EdDSA"
REVOKED_KEY = "pai:revoked-before:{user_id}"
REVOKED_SESSION_KEY = "pai:session-revoked-before:{session_id}"


class InvalidToken(Exception):
    """The token is missing, malformed, forged, expired or revoked. The message is safe to show."""


@dataclass(frozen=True, slots=True)
class Principal:
    user_id: uuid.UUID
    roles: tuple[str, ...]
    token_id: str
    session_id: str | None
    issued_at: float

    @property
    def is_admin(self) -> bool:
        return "admin" in self.roles


class KeySource(Protocol):
    async def key_for(self, kid: str) -> Any: ...


class StaticKeys:
    """Keys known in-process (the auth service verifying its own tokens)."""

    def __init__(self, keys: Mapping[str, Any]) -> None:
        self._keys = dict(keys)

    async def key_for(self, kid: str) -> Any:
        try:
            return self._keys[kid]
        except KeyError:
            raise InvalidToken("unknown signing key") from None


class JwksKeys:
    """Public keys fetched from a JWKS URL, cached, refetched on an unknown ``kid``.

    One refetch at a time: requests that arrive with the new ``kid`` while it runs wait for it
    and use its answer (after a key change, the first burst of requests would otherwise find
    the refresh rate-limited and be refused). Refetches are at most every
    ``min_refresh_seconds``, so made-up ``kid``s cannot make us hammer the auth service."""

    def __init__(self, url: str, client: httpx.AsyncClient, min_refresh_seconds: float) -> None:
        self._url = url
        self._client = client
        self._min_refresh = min_refresh_seconds
        self._keys: dict[str, Any] = {}
        self._fetched_at = float("-inf")
        self._refreshing = asyncio.Lock()

    async def key_for(self, kid: str) -> Any:
        key = self._keys.get(kid)
        if key is None:
            async with self._refreshing:
                key = self._keys.get(kid)  # fetched while we waited
                if key is None and time.monotonic() - self._fetched_at >= self._min_refresh:
                    await self._refresh()
                    key = self._keys.get(kid)
        if key is None:
            raise InvalidToken("unknown signing key")
        return key

    async def _refresh(self) -> None:
        self._fetched_at = time.monotonic()
        try:
            response = await self._client.get(self._url, timeout=5.0)
            response.raise_for_status()
            jwks = jwt.PyJWKSet.from_dict(response.json())
        except (httpx.HTTPError, ValueError, jwt.PyJWKSetError) as exc:
            log.warning("jwks_fetch_failed", url=self._url, error=str(exc))
            return
        self._keys = {
            k.key_id: k.key for k in jwks.keys if k.key_id and k.algorithm_name in (ALGORITHM, "Ed25519")
        }


class RevocationList:
    """ "Tokens issued up to now are void" markers in Redis: per user (deactivation, deletion)
    and per session, the login's refresh family that access tokens carry as ``sid`` (logout,
    password change, a reused refresh token). One round trip checks both."""

    def __init__(self, redis: Redis, ttl_seconds: int) -> None:
        self._redis = redis
        self._ttl = ttl_seconds

    async def revoke_user(self, user_id: uuid.UUID) -> None:
        # Kept as long as any token issued before now can still be unexpired (plus slack).
        await self._redis.set(REVOKED_KEY.format(user_id=user_id), time.time(), ex=self._ttl + 60)

    async def revoke_sessions(self, session_ids: Iterable[uuid.UUID | str]) -> None:
        keys = [REVOKED_SESSION_KEY.format(session_id=sid) for sid in session_ids]
        if keys:
            now = time.time()
            async with self._redis.pipeline(transaction=False) as pipe:
                for key in keys:
                    pipe.set(key, now, ex=self._ttl + 60)
                await pipe.execute()

    async def is_revoked(self, user_id: uuid.UUID, issued_at: float, session_id: str | None = None) -> bool:
        keys = [REVOKED_KEY.format(user_id=user_id)]
        if session_id:
            keys.append(REVOKED_SESSION_KEY.format(session_id=session_id))
        markers = await self._redis.mget(keys)
        return any(marker is not None and issued_at <= float(marker) for marker in markers)


class TokenVerifier:
    def __init__(
        self,
        keys: KeySource,
        revocations: RevocationList,
        issuer: str,
        audience: str,
        cache_size: int = 10_000,
    ) -> None:
        self._keys = keys
        self._revocations = revocations
        self._issuer = issuer
        self._audience = audience
        # Tokens whose signature and claims already checked out: a client sends the same token
        # for its whole lifetime, and Ed25519 + claim checks cost more than the rest of a hop.
        # Expiry and revocation are still checked on every request.
        self._verified: LRUCache[str, tuple[Principal, float]] = LRUCache(maxsize=cache_size)

    async def verify(self, token: str) -> Principal:
        """Signature, algorithm, issuer, audience, expiry, then the revocation marker."""
        cached = self._verified.get(token)
        if cached is None:
            principal, expires_at = await self._check_signature_and_claims(token)
            self._verified[token] = (principal, expires_at)
        else:
            principal, expires_at = cached
            if expires_at <= time.time():
                raise InvalidToken("token expired")
        if await self._revocations.is_revoked(principal.user_id, principal.issued_at, principal.session_id):
            raise InvalidToken("token revoked")
        return principal

    async def _check_signature_and_claims(self, token: str) -> tuple[Principal, float]:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise InvalidToken("malformed token") from None
        if header.get("alg") != ALGORITHM or not isinstance(header.get("kid"), str):
            raise InvalidToken("unsupported token algorithm")
        key = await self._keys.key_for(header["kid"])
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=[ALGORITHM],
                audience=self._audience,
                issuer=self._issuer,
                options={"require": ["exp", "iat", "sub", "jti", "iss", "aud"]},
            )
            principal = Principal(
                user_id=uuid.UUID(claims["sub"]),
                roles=tuple(str(r) for r in claims.get("roles", [])),
                token_id=str(claims["jti"]),
                session_id=claims.get("sid"),
                issued_at=float(claims["iat"]),
            )
            return principal, float(claims["exp"])
        except jwt.ExpiredSignatureError:
            raise InvalidToken("token expired") from None
        except (jwt.PyJWTError, ValueError, TypeError):
            raise InvalidToken("invalid token") from None


def bearer_token(authorization: str | None) -> str:
    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise InvalidToken("missing bearer token")
    return token.strip()


TOKEN_REFUSED = "The access token is missing, invalid or expired"  # noqa: S105 - a message


def token_refused(exc: Exception) -> Unauthenticated:
    """One answer for every refused token; why goes to the log only (a client probing tokens
    learns nothing about which check failed)."""
    log.info("token_refused", reason=str(exc)[:200])
    return Unauthenticated(TOKEN_REFUSED)


def principal_dependency(
    get_verifier: Callable[[Request], TokenVerifier],
) -> Callable[[Request], Awaitable[Principal]]:
    """Build a FastAPI dependency that authenticates the request or answers 401."""

    async def current_principal(request: Request) -> Principal:
        try:
            principal = await get_verifier(request).verify(bearer_token(request.headers.get("authorization")))
        except InvalidToken as exc:
            raise token_refused(exc) from None
        request.state.user_id = str(principal.user_id)
        structlog.contextvars.bind_contextvars(user_id=str(principal.user_id))
        return principal

    return current_principal
