"""TokenCipher: round trip, key rotation, and errors that never show a key or a token."""

import base64

import pytest
from cryptography.fernet import Fernet

from services.mail.crypto import TokenCipher, TokenDecryptionError, generate_key, parse_keys

SECRET = "ya29.a0AfH6SMB-refresh-token-ünïcode"


def chains_nothing(error: BaseException) -> bool:
    """A traceback would print a chained exception too, and cryptography's could hold the input."""
    return error.__cause__ is None and (error.__context__ is None or error.__suppress_context__)


def test_round_trip() -> None:
    cipher = TokenCipher([generate_key()])

    token = cipher.encrypt(SECRET)

    assert SECRET not in token
    assert token != cipher.encrypt(SECRET)  # a fresh IV each time
    assert cipher.decrypt(token) == SECRET
    assert cipher.decrypt(cipher.encrypt("")) == ""


def test_rotation() -> None:
    old, new = generate_key(), generate_key()
    before = TokenCipher([old]).encrypt(SECRET)
    during = TokenCipher([new, old])

    assert during.decrypt(before) == SECRET  # the old key still opens old tokens
    assert (
        Fernet(new.encode()).decrypt(during.encrypt(SECRET)).decode() == SECRET
    )  # new ones use the first key
    rotated = during.rotate(before)
    after = TokenCipher([new])
    assert after.decrypt(rotated) == SECRET  # readable once the old key is dropped
    with pytest.raises(TokenDecryptionError):
        after.decrypt(before)
    with pytest.raises(TokenDecryptionError):
        TokenCipher([old]).decrypt(rotated)


def test_wrong_key_or_altered_token_fails_without_leaking() -> None:
    key, other = generate_key(), generate_key()
    token = TokenCipher([key]).encrypt(SECRET)
    tampered = token[:-6] + ("A" if token[-6] != "A" else "B") + token[-5:]

    for cipher, bad in (
        (TokenCipher([other]), token),
        (TokenCipher([key]), tampered),
        (TokenCipher([key]), "x"),
    ):
        with pytest.raises(TokenDecryptionError) as caught:
            cipher.decrypt(bad)
        message = str(caught.value)
        assert "could not be decrypted" in message
        assert key not in message and other not in message and bad not in message and SECRET not in message
        assert chains_nothing(caught.value)

    with pytest.raises(TokenDecryptionError):
        TokenCipher([other]).rotate(token)


def test_generate_key_makes_distinct_valid_keys() -> None:
    keys = {generate_key() for _ in range(5)}

    assert len(keys) == 5
    for key in keys:
        assert len(base64.urlsafe_b64decode(key)) == 32
        assert parse_keys(key) == [key]


def test_parse_keys() -> None:
    first, second = generate_key(), generate_key()

    assert parse_keys(f"{first},{second}") == [first, second]
    assert parse_keys(f"  {first} ,\n {second}\n") == [first, second]
    cipher = TokenCipher(parse_keys(f"{first},{second}"))
    assert Fernet(first.encode()).decrypt(cipher.encrypt("t").encode()) == b"t"


@pytest.mark.parametrize(
    ("setting", "expected"),
    [
        ("", "empty"),
        (" , ", "entry 1"),
        ("{good},", "entry 2 of the token key setting is empty"),
        ("{good},,{good}", "entry 2"),
        ("not-a-key-but-a-secret-password", "entry 1 of the token key setting is not a valid key"),
        ("{good},c2hvcnQtc2VjcmV0LWtleQ==", "entry 2 of the token key setting is not a valid key"),
        ("{good},{good}x", "entry 2"),
        ("{good}{good}", "entry 1"),  # a missing comma must not silently drop the second key
        ("{good},ключ-секрет", "entry 2"),
    ],
)
def test_parse_keys_errors_never_echo_a_key(setting: str, expected: str) -> None:
    good = generate_key()
    setting = setting.replace("{good}", good)

    with pytest.raises(ValueError) as caught:
        parse_keys(setting)

    message = str(caught.value)
    assert expected in message
    assert good not in message
    for entry in setting.split(","):
        if entry.strip():
            assert entry.strip() not in message
    assert chains_nothing(caught.value)


def test_cipher_refuses_bad_key_lists() -> None:
    secret = "short-secret"
    with pytest.raises(ValueError) as caught:
        TokenCipher([generate_key(), secret])
    assert "entry 2" in str(caught.value) and secret not in str(caught.value)
    with pytest.raises(ValueError, match="at least one"):
        TokenCipher([])
    with pytest.raises(TypeError, match="parse_keys"):
        TokenCipher(generate_key())
