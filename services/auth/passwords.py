"""Password hashing: argon2id for everything new, legacy bcrypt verified and upgraded."""

import bcrypt
from anyio import CapacityLimiter, to_thread
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

_hasher = PasswordHasher()  # argon2id with the library's current recommended parameters
_LEGACY_BCRYPT_PREFIXES = ("$2a$", "$2b$", "$2y$")
_BCRYPT_MAX_BYTES = 72  # the legacy app's bcrypt looked at the first 72 bytes only


def hash_password_sync(password: str) -> str:
    return _hasher.hash(password)


def _verify_sync(stored_hash: str, password: str) -> tuple[bool, bool]:
    if stored_hash.startswith(_LEGACY_BCRYPT_PREFIXES):
        candidate = password.encode()[:_BCRYPT_MAX_BYTES]
        try:
            return bcrypt.checkpw(candidate, stored_hash.encode()), True
        except ValueError:
            return False, False
    try:
        _hasher.verify(stored_hash, password)
    except (VerificationError, InvalidHashError):
        return False, False
    return True, _hasher.check_needs_rehash(stored_hash)


# A real hash to verify against for unknown users, so they cost the same time as known ones.
_DUMMY_HASH = _hasher.hash("not-a-real-password-just-timing")


_concurrency = 1
_limiter: CapacityLimiter | None = None


def limit_concurrency(hashes_at_once: int) -> None:
    """How many hashes may run at once in this process (the auth service sets it at start-up)."""
    global _concurrency, _limiter
    _concurrency, _limiter = hashes_at_once, None


def _hashing() -> CapacityLimiter:
    global _limiter
    if _limiter is None:
        _limiter = CapacityLimiter(_concurrency)
    return _limiter


async def hash_password(password: str) -> str:
    """Hashing takes ~50 ms of CPU: off the event loop, and only a few at a time."""
    return await to_thread.run_sync(hash_password_sync, password, limiter=_hashing())


async def verify_password(stored_hash: str | None, password: str) -> tuple[bool, bool]:
    """Return ``(matches, needs_rehash)``. ``stored_hash=None`` burns the same time and fails."""
    if stored_hash is None:
        await to_thread.run_sync(_verify_sync, _DUMMY_HASH, password, limiter=_hashing())
        return False, False
    return await to_thread.run_sync(_verify_sync, stored_hash, password, limiter=_hashing())
