"""The legacy app's encryption of Gmail tokens, undone once, at import.

It stored each token as a Fernet token, base64-encoded once more, under a key derived from its
``SECRET_KEY`` with PBKDF2-HMAC-SHA256 (a fixed salt, 100,000 iterations, 32 bytes). The
importer decrypts with that key and stores the plain token again under our own keys
(:mod:`services.mail.crypto`).
"""

import base64

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.pbkdf2 import PBKDF2HMAC

LEGACY_SALT = b"email_token_salt_2024"
LEGACY_ITERATIONS = 100_000


class LegacyTokens:
    """The legacy app's token encryption: Fernet under a key derived from its ``SECRET_KEY``
    (PBKDF2-HMAC-SHA256, fixed salt, 100,000 iterations), the Fernet token base64-encoded again."""

    def __init__(self, secret_key: str | None) -> None:
        self._fernet: Fernet | None = None
        if secret_key:
            kdf = PBKDF2HMAC(
                algorithm=hashes.SHA256(), length=32, salt=LEGACY_SALT, iterations=LEGACY_ITERATIONS
            )
            self._fernet = Fernet(base64.urlsafe_b64encode(kdf.derive(secret_key.encode("utf-8"))))

    def decrypt(self, stored: str | None) -> str | None:
        """The plain token, None for an empty one; raises ``ValueError`` if it does not open."""
        if not stored:
            return None
        if self._fernet is None:
            raise ValueError("no legacy SECRET_KEY was given")
        try:
            return self._fernet.decrypt(base64.urlsafe_b64decode(stored.encode("ascii"))).decode("utf-8")
        except (InvalidToken, ValueError, UnicodeError):
            raise ValueError("the token does not decrypt with the legacy SECRET_KEY") from None
