"""The legacy import's pieces on their own: values, file look-up, legacy token decryption and
the report's verdict."""

import os
import sqlite3
from datetime import UTC
from zoneinfo import ZoneInfo

import bcrypt
import pytest

from services.auth.legacy import has_default_password
from services.mail.legacy_tokens import LegacyTokens
from shared.legacy.files import find_legacy_file
from shared.legacy.report import Checksum, ServiceReport, TableReport, merge, render
from shared.legacy.source import SourceError, open_source
from shared.legacy.values import BadValue, addresses, boolean, legacy_uuid, row_digest, timestamp
from tests.legacy_db import legacy_encrypt, legacy_fernet


def test_naive_timestamps_with_and_without_microseconds_are_utc_or_the_legacy_zone():
    assert timestamp("2024-03-01 09:00:07").isoformat() == "2024-03-01T09:00:07+00:00"
    assert timestamp("2024-03-01 09:00:07.123456").microsecond == 123456
    berlin = timestamp("2024-07-01 12:00:00", ZoneInfo("Europe/Berlin"))
    assert berlin.tzinfo == UTC and berlin.hour == 10
    with pytest.raises(BadValue, match="unreadable timestamp"):
        timestamp("last tuesday")


def test_recipients_bare_strings_and_json_arrays():
    assert addresses("bob@example.com") == [{"name": "", "email": "bob@example.com"}]
    assert addresses('["Bob <bob@example.com>", "c@example.com"]') == [
        {"name": "Bob", "email": "bob@example.com"},
        {"name": "", "email": "c@example.com"},
    ]
    assert addresses(None) == [] and addresses("[]") == []
    assert boolean("1") and not boolean(0) and boolean(None, True)


def test_ids_are_the_same_everywhere_and_differ_by_table():
    assert legacy_uuid("users", 7) == legacy_uuid("users", "7")
    assert legacy_uuid("users", 7) != legacy_uuid("documents", 7)
    assert row_digest(["a", None]) == row_digest(["a", ""]) != row_digest(["a", "b"])


def test_files_are_found_by_their_tail_and_never_outside_the_folder(tmp_path):
    uploads = tmp_path / "uploads"
    (uploads / "3").mkdir(parents=True)
    (uploads / "3" / "user_3_a.pdf").write_bytes(b"%PDF")
    (tmp_path / "secret.txt").write_text("outside")
    (uploads / "3" / "link.txt").symlink_to(tmp_path / "secret.txt")
    found = find_legacy_file(uploads, "/srv/app/backend/data/uploads/3/user_3_a.pdf", 3)
    assert found == (uploads / "3" / "user_3_a.pdf").resolve()
    assert find_legacy_file(uploads, "C:\\old\\static\\uploads\\3\\user_3_a.pdf", 3) == found
    assert find_legacy_file(uploads, "user_3_a.pdf", 3) == found  # relative, by owner
    assert find_legacy_file(uploads, "/srv/uploads/../secret.txt", 3) is None
    assert find_legacy_file(uploads, "/srv/uploads/3/link.txt", 3) is None  # a link out of the folder
    assert find_legacy_file(uploads, "/srv/uploads/3/gone.pdf", 3) is None


def test_legacy_tokens_decrypt_only_with_the_legacy_key():
    stored = legacy_encrypt(legacy_fernet("the-key"), "ya29.token")
    assert LegacyTokens("the-key").decrypt(stored) == "ya29.token"
    assert LegacyTokens("the-key").decrypt(None) is None
    with pytest.raises(ValueError, match="does not decrypt"):
        LegacyTokens("another-key").decrypt(stored)
    with pytest.raises(ValueError, match="no legacy SECRET_KEY"):
        LegacyTokens(None).decrypt(stored)


def test_a_row_neither_imported_nor_skipped_fails_the_verdict():
    table = TableReport(table="emails", source=3, imported=2, arrived=2)
    merged = merge([ServiceReport(service="mail", tables=[table])])
    assert not merged["ok"] and merged["lost"] == 1
    assert "NOT verified: 1 rows lost" in render(merged)
    table.skip(3, "duplicate Gmail message id")
    merged = merge([ServiceReport(service="mail", tables=[table])])
    assert merged["ok"] and "verified: 2 rows, 0 lost" in render(merged)


def test_a_checksum_that_differs_fails_the_verdict():
    report = ServiceReport(service="assistant", tables=[TableReport(table="queries", source=1, arrived=1)])
    report.checksums.append(Checksum(name="questions and answers", user="2", source="aa", target="ab"))
    merged = merge([report])
    assert not merged["ok"] and merged["differing_checksums"] == 1
    assert "DIFFERS questions and answers of user 2" in render(merged)


async def test_sources_that_are_not_legacy_databases_are_refused(tmp_path):
    with pytest.raises(SourceError, match="no legacy database"):
        await open_source(str(tmp_path / "missing.db"))
    other = tmp_path / "other.db"
    sqlite3.connect(other).execute("CREATE TABLE things (id INTEGER)").connection.commit()
    with pytest.raises(SourceError, match="no users table"):
        await open_source(str(other))
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(os.urandom(4096))
    with pytest.raises(SourceError, match="not a readable SQLite"):
        await open_source(str(garbage))


async def test_default_passwords_are_recognised_through_the_sign_in_verification():
    hashed = bcrypt.hashpw(b"admin123", bcrypt.gensalt(rounds=4)).decode()
    assert await has_default_password(hashed)
    assert not await has_default_password(
        bcrypt.hashpw(b"a real passphrase", bcrypt.gensalt(rounds=4)).decode()
    )
    assert not await has_default_password("not a hash at all")
