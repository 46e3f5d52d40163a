"""Signing keys, the JWKS document, and minting access and refresh tokens."""

import hashlib
import json
import math
import secrets
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from jwt.algorithms import OKPAlgorithm

from services.auth.settings import AuthSettings
from shared.auth import ALGORITHM


def key_id(public_key: Ed25519PublicKey) -> str:
    """RFC 7638 thumbprint: the same key always gets the same ``kid``."""
    jwk = json.loads(OKPAlgorithm.to_jwk(public_key))
    canonical = json.dumps({k: jwk[k] for k in ("crv", "kty", "x")}, separators=(",", ":"))
    return jwt.utils.base64url_encode(hashlib.sha256(canonical.encode()).digest()).decode()


def public_jwk(public_key: Ed25519PublicKey) -> dict:
    jwk = json.loads(OKPAlgorithm.to_jwk(public_key))
    return {**jwk, "kid": key_id(public_key), "alg": ALGORITHM, "use": "sig"}


def generate_private_key_file(path: Path) -> bool:
    """Write a new PEM private key (mode 0600) unless one exists; True when written."""
    if path.exists():
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    pem = Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    path.touch(mode=0o600)
    path.write_bytes(pem)
    return True


@dataclass(frozen=True)
class KeyRing:
    signing_key: Ed25519PrivateKey
    signing_kid: str
    public_keys: dict[str, Ed25519PublicKey]  # current and previous, by kid

    @classmethod
    def load(cls, settings: AuthSettings) -> "KeyRing":
        if settings.jwt_private_key:
            pem = settings.jwt_private_key.encode()
        elif settings.jwt_private_key_file.exists():
            pem = settings.jwt_private_key_file.read_bytes()
        else:
            raise RuntimeError(
                f"no JWT signing key: set PAI_JWT_PRIVATE_KEY or create "
                f"{settings.jwt_private_key_file} (`python -m services.auth keygen`)"
            )
        private = serialization.load_pem_private_key(pem, password=None)
        if not isinstance(private, Ed25519PrivateKey):
            raise RuntimeError("the JWT signing key must be an Ed25519 private key")
        public = {key_id(private.public_key()): private.public_key()}
        for path in settings.jwt_previous_public_key_files:
            previous = serialization.load_pem_public_key(path.read_bytes())
            if not isinstance(previous, Ed25519PublicKey):
                raise RuntimeError(f"{path} is not an Ed25519 public key")
            public[key_id(previous)] = previous
        return cls(private, key_id(private.public_key()), public)

    def jwks(self) -> dict:
        return {"keys": [public_jwk(key) for key in self.public_keys.values()]}


@dataclass(frozen=True)
class AccessTokenIssuer:
    keys: KeyRing
    issuer: str
    audience: str
    ttl_seconds: int

    def issue(self, user_id: uuid.UUID, *, is_admin: bool, session_id: uuid.UUID) -> str:
        now = time.time()
        claims = {
            "iss": self.issuer,
            "aud": self.audience,
            "sub": str(user_id),
            # NumericDate may carry fractions (RFC 7519): revocation markers compare to the ms.
            "iat": math.floor(now * 1000) / 1000,  # floor: never later than the truth
            "exp": int(now) + self.ttl_seconds,
            "jti": uuid.uuid4().hex,
            "sid": str(session_id),
            "roles": ["admin"] if is_admin else [],
        }
        return jwt.encode(
            claims,
            self.keys.signing_key,
            algorithm=ALGORITHM,
            headers={"kid": self.keys.signing_kid},
        )


def new_refresh_token() -> tuple[str, str]:
    """A random opaque token and the hash we store in its place."""
    token = secrets.token_urlsafe(32)
    return token, hash_refresh_token(token)


def hash_refresh_token(token: str) -> str:
    # 256 random bits need no slow hash: sha256 is enough and keeps lookups indexed.
    return hashlib.sha256(token.encode()).hexdigest()
