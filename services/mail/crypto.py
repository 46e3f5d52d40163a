"""Encryption at rest of the OAuth tokens of connected mail accounts.

A database dump must not hand out access to users' mailboxes, so tokens are stored as Fernet
tokens (AES-128-CBC with an HMAC-SHA256, from ``cryptography``). Keys rotate without
downtime: the setting lists the new key first and the old ones after it; everything decrypts
with any listed key, ``rotate`` re-encrypts under the first, and an old key is dropped once
no stored token needs it. No message raised here contains a key or a token.
"""

import base64
from collections.abc import Sequence

from cryptography.fernet import Fernet, InvalidToken, MultiFernet


class TokenDecryptionError(Exception):
    """No configured key opens the token: it was made with a dropped key, or altered."""


class TokenCipher:
    def __init__(self, keys: Sequence[str]) -> None:
        """``keys`` are Fernet keys, the current one first. Raises ``ValueError`` naming the
        bad key by position only."""
        if isinstance(keys, str):  # a str is a Sequence[str]: it would be read letter by letter
            raise TypeError("keys must be a list of keys; parse a comma-separated setting with parse_keys")
        if not keys:
            raise ValueError("at least one token encryption key is needed")
        self._fernet = MultiFernet([_fernet(key, position) for position, key in enumerate(keys, 1)])

    def encrypt(self, plaintext: str) -> str:
        return self._fernet.encrypt(plaintext.encode("utf-8")).decode("ascii")

    def decrypt(self, token: str) -> str:
        try:
            return self._fernet.decrypt(token.encode("utf-8")).decode("utf-8")
        except (InvalidToken, UnicodeDecodeError):
            raise TokenDecryptionError(_DECRYPT_FAILED) from None

    def rotate(self, token: str) -> str:
        """The same plaintext under the current key (a token already under it is re-made
        too: Fernet tokens carry no key id to tell)."""
        try:
            return self._fernet.rotate(token.encode("utf-8")).decode("ascii")
        except InvalidToken:
            raise TokenDecryptionError(_DECRYPT_FAILED) from None


_DECRYPT_FAILED = (
    "the stored token could not be decrypted with any configured key "
    "(was its key removed from the key list, or the token altered?)"
)


def generate_key() -> str:
    """A fresh random key, in the form the key setting takes."""
    return Fernet.generate_key().decode("ascii")


def parse_keys(setting: str) -> list[str]:
    """The keys of a comma-separated setting (e.g. ``PAI_MAIL_TOKEN_KEYS``), current first.
    Raises ``ValueError`` on an empty setting, an empty entry or an invalid key, naming the
    entry by position: the value itself is secret and must not reach logs."""
    if not setting.strip():
        raise ValueError("the token key setting is empty: set at least one key (see generate_key)")
    keys = [entry.strip() for entry in setting.split(",")]
    for position, key in enumerate(keys, 1):
        if not key:
            raise ValueError(f"entry {position} of the token key setting is empty")
        _fernet(key, position)
    return keys


def _fernet(key: str, position: int) -> Fernet:
    """Fernet itself ignores anything after the padding, so two keys pasted without a comma
    would pass as the first alone and the second be lost: only the exact encoding is taken."""
    try:
        raw = base64.urlsafe_b64decode(key.encode("ascii"))
        if base64.urlsafe_b64encode(raw).decode("ascii") != key:
            raise ValueError("not canonical")
        return Fernet(key)
    except (ValueError, TypeError):  # binascii.Error and UnicodeEncodeError are ValueErrors
        raise ValueError(
            f"entry {position} of the token key setting is not a valid key "
            "(a Fernet key is 32 random bytes, url-safe base64 encoded)"
        ) from None
