"""The shared verifier's cache of checked signatures never outlives expiry or revocation."""

import asyncio
import json
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import jwt
import jwt.algorithms
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from services.auth.tokens import key_id
from shared.auth import InvalidToken, JwksKeys, RevocationList, StaticKeys, TokenVerifier
from shared.redis import create_redis
from tests.support import free_port


@pytest.fixture
async def verifier_parts(redis_url):
    key = Ed25519PrivateKey.generate()
    kid = key_id(key.public_key())
    redis = create_redis(redis_url)
    revocations = RevocationList(redis, ttl_seconds=60)
    verifier = TokenVerifier(StaticKeys({kid: key.public_key()}), revocations, "pai-auth", "pai-api")
    yield key, kid, revocations, verifier
    await redis.aclose()


def token(key, kid: str, user_id: uuid.UUID, lifetime: float) -> str:
    now = time.time()
    claims = {
        "iss": "pai-auth",
        "aud": "pai-api",
        "sub": str(user_id),
        "iat": now - 1,
        "exp": int(now + lifetime),
        "jti": uuid.uuid4().hex,
        "roles": [],
    }
    return jwt.encode(claims, key, algorithm="EdDSA", headers={"kid": kid})


async def test_a_cached_token_still_expires(verifier_parts):
    key, kid, _, verifier = verifier_parts
    short = token(key, kid, uuid.uuid4(), lifetime=1.2)
    assert (await verifier.verify(short)).user_id  # checked and cached
    expires_at = jwt.decode(short, options={"verify_signature": False})["exp"]
    await asyncio.sleep(max(0.0, expires_at - time.time()) + 0.05)
    with pytest.raises(InvalidToken, match="expired"):
        await verifier.verify(short)


async def test_a_cached_token_is_still_revoked(verifier_parts):
    key, kid, revocations, verifier = verifier_parts
    user_id = uuid.uuid4()
    good = token(key, kid, user_id, lifetime=300)
    assert (await verifier.verify(good)).user_id == user_id
    await revocations.revoke_user(user_id)
    with pytest.raises(InvalidToken, match="revoked"):
        await verifier.verify(good)


def jwks_of(*public_keys) -> dict:
    keys = []
    for public in public_keys:
        jwk = json.loads(jwt.algorithms.OKPAlgorithm.to_jwk(public))
        keys.append({**jwk, "kid": key_id(public), "alg": "EdDSA", "use": "sig"})
    return {"keys": keys}


async def test_concurrent_first_requests_after_a_key_change_share_one_jwks_refetch(redis_url):
    """The signing key changed: ten requests arrive at once with the new kid. One refetch
    serves them all (before: the first refetched, the rest found the refresh rate-limited)."""
    old, new = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    served = {"jwks": jwks_of(old.public_key()), "fetches": 0}

    class Jwks(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            served["fetches"] += 1
            time.sleep(0.2)  # a slow auth service widens the window
            body = json.dumps(served["jwks"]).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", free_port()), Jwks)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    redis = create_redis(redis_url)
    try:
        async with httpx.AsyncClient() as client:
            url = f"http://127.0.0.1:{server.server_address[1]}/jwks.json"
            keys = JwksKeys(url, client, min_refresh_seconds=5.0)
            verifier = TokenVerifier(keys, RevocationList(redis, 60), "pai-auth", "pai-api")
            await verifier.verify(token(old, key_id(old.public_key()), uuid.uuid4(), 300))
            served["jwks"] = jwks_of(new.public_key(), old.public_key())  # the rotation
            await asyncio.sleep(5.1)  # past the refetch interval
            tokens = [token(new, key_id(new.public_key()), uuid.uuid4(), 300) for _ in range(10)]
            results = await asyncio.gather(*(verifier.verify(t) for t in tokens), return_exceptions=True)
    finally:
        server.shutdown()
        await redis.aclose()
    assert [r for r in results if isinstance(r, Exception)] == []
    assert served["fetches"] == 2  # the first look-up, then one refetch for all ten
