"""The shared verifier's cache of checked signatures never outlives expiry or revocation."""

import asyncio
import time
import uuid

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from services.auth.tokens import key_id
from shared.auth import InvalidToken, RevocationList, StaticKeys, TokenVerifier
from shared.redis import create_redis


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
