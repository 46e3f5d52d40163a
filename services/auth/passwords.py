"""Password hashing: argon2id for everything new, legacy bcrypt verified and upgraded."""

import contextlib
import os
import threading

import bcrypt
from anyio import CapacityLimiter, to_thread
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

_hasher = PasswordHasher()  # argon2id with the library's current recommended parameters
LEGACY_BCRYPT_PREFIXES = ("$2a$", "$2b$", "$2y$")
_BCRYPT_MAX_BYTES = 72  # the legacy app's bcrypt looked at the first 72 bytes only


def hash_password_sync(password: str) -> str:
    return _hasher.hash(password)


def _verify_sync(stored_hash: str, password: str) -> tuple[bool, bool]:
    if stored_hash.startswith(LEGACY_BCRYPT_PREFIXES):
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
_niceness = 0
_limiter: CapacityLimiter | None = None
_thread = threading.local()


def limit_concurrency(hashes_at_once: int, niceness: int = 0) -> None:
    """How many hashes may run at once in this process, and how much lower than the rest of the
    machine their threads are scheduled (the auth service sets both at start-up)."""
    global _concurrency, _niceness, _limiter
    _concurrency, _niceness, _limiter = hashes_at_once, niceness, None


def _in_background(work, *args):
    """Run ``work`` in this (worker) thread at lower CPU priority: under a flood of sign-ins
    the kernel then prefers every other request's threads over password hashing. Linux
    schedules threads individually, so only this thread is demoted (once)."""
    if _niceness and getattr(_thread, "niceness", 0) < _niceness:
        with contextlib.suppress(OSError, AttributeError):
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), _niceness)
            _thread.niceness = _niceness
    return work(*args)


def _hashing() -> CapacityLimiter:
    global _limiter
    if _limiter is None:
        _limiter = CapacityLimiter(_concurrency)
    return _limiter


async def hash_password(password: str) -> str:
    """Hashing takes ~50 ms of CPU: off the event loop, and only a few at a time."""
    return await to_thread.run_sync(_in_background, hash_password_sync, password, limiter=_hashing())


async def verify_password(stored_hash: str | None, password: str) -> tuple[bool, bool]:
    """Return ``(matches, needs_rehash)``. ``stored_hash=None`` burns the same time and fails."""
    if stored_hash is None:
        await to_thread.run_sync(_in_background, _verify_sync, _DUMMY_HASH, password, limiter=_hashing())
        return False, False
    return await to_thread.run_sync(_in_background, _verify_sync, stored_hash, password, limiter=_hashing())
