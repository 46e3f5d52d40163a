"""Documents end to end through the gateway: upload, ingestion by the real ARQ worker into
LanceDB, search, isolation between users, row-level security, deletion and purge."""

import asyncio
import time
import uuid
from pathlib import Path

import asyncpg
import pytest
from sqlalchemy.engine import make_url

from shared.embeddings import EmbeddingSettings, create_embedder
from shared.vectors import DOCUMENT_CHUNKS, create_vector_store
from tests import files


async def upload(gateway, account, name: str, content: bytes, **fields):
    return await gateway.post(
        "/documents", headers=account.headers, files={"file": (name, content)}, data=fields
    )


async def wait_settled(gateway, account, document_id: str, timeout: float = 90.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        document = (await gateway.get(f"/documents/{document_id}", headers=account.headers)).json()
        if document["status"] in ("ready", "failed") or time.monotonic() > deadline:
            return document
        await asyncio.sleep(0.2)


async def uploaded_ready(gateway, account, name: str, content: bytes, **fields) -> dict:
    response = await upload(gateway, account, name, content, **fields)
    assert response.status_code == 202, response.text
    document = await wait_settled(gateway, account, response.json()["id"])
    assert document["status"] == "ready", document
    return document


@pytest.fixture(scope="module")
def vectors(stack):
    """The same embedded store the worker writes, opened from the test process."""
    embedder = create_embedder(EmbeddingSettings())
    return create_vector_store(
        data_dir=Path(stack.env["PAI_DATA_DIR"]), model=embedder.model_name, dimension=embedder.dimension
    )


def uploads_dir(stack) -> Path:
    return Path(stack.env["PAI_DATA_DIR"]) / "uploads"


TYPES = {
    "pdf": ("report.pdf", files.three_page_pdf, "application/pdf", 2),
    "docx": (
        "notes.docx",
        files.docx_file,
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        None,
    ),
    "html": ("page.html", files.html_file, "text/html", None),
    "eml": ("message.eml", files.eml_file, "message/rfc822", None),
    "text": ("notes.txt", files.text_file, "text/plain", None),
}


@pytest.mark.parametrize("kind", TYPES)
async def test_each_type_is_ingested_and_its_sentence_found(gateway, new_account, vectors, kind):
    account = await new_account()
    name, build, mime, page = TYPES[kind]
    content = build()
    response = await upload(gateway, account, name, content, title=f"My {kind}")
    assert response.status_code == 202
    created = response.json()
    assert created["status"] == "queued" and created["mime_type"] == mime
    assert created["size"] == len(content) and created["title"] == f"My {kind}"

    document = await wait_settled(gateway, account, created["id"])
    assert document["status"] == "ready", document
    assert document["progress"] == 1.0 and document["chunk_count"] >= 1
    assert document["page_count"] == (3 if kind == "pdf" else None)
    assert await vectors.count(uuid.UUID(account.id), DOCUMENT_CHUNKS) == document["chunk_count"]

    found = await gateway.get(
        "/documents/search",
        headers=account.headers,
        params={"q": "how many herons did the lighthouse keeper count"},
    )
    assert found.status_code == 200
    best = found.json()["results"][0]
    assert best["document_id"] == created["id"] and best["title"] == f"My {kind}"
    assert "herons" in best["text"] and best["kind"] == "document"
    assert best["page"] == page

    original = await gateway.get(f"/documents/{created['id']}/content", headers=account.headers)
    assert original.content == content
    assert original.headers["content-type"].startswith(mime)

    # The extracted text, which the viewer shows for every type but PDF: its words, not the
    # file's bytes (a DOCX is a zip, an email MIME), and every passage stands in it as quoted.
    text = await gateway.get(f"/documents/{created['id']}/text", headers=account.headers)
    assert text.status_code == 200
    assert text.headers["content-type"] == "text/plain; charset=utf-8"
    assert best["text"] in text.text
    assert text.text[best["start"] : best["end"]] == best["text"]


async def test_bad_uploads_get_clear_errors_and_leave_nothing(gateway, new_account, stack):
    account = await new_account()
    cases = [
        (await upload(gateway, account, "image.pdf", files.PNG), 415, "unsupported_media_type"),
        (await upload(gateway, account, "empty.txt", b""), 422, "empty_file"),
        (await upload(gateway, account, "long.txt", b"hello", description="x" * 4001), 422, None),
        (await upload(gateway, account, "big.txt", b"a" * (3 * 1024 * 1024 + 1)), 413, "file_too_large"),
        (await gateway.post("/documents", headers=account.headers, json={"file": "x"}), 415, None),
        (
            await gateway.post(
                "/documents",
                headers=account.headers,
                data={"title": "no file"},
                files={"other": ("x.txt", b"hello")},
            ),
            422,
            None,
        ),
    ]
    for response, status, code in cases:
        assert response.status_code == status, response.text
        if code:
            assert response.json()["error"]["code"] == code
    listing = (await gateway.get("/documents", headers=account.headers)).json()
    assert listing["total"] == 0
    user_dir = uploads_dir(stack) / account.id
    assert not user_dir.exists() or not any(user_dir.rglob("*.part")), "no partial upload may remain"


@pytest.mark.parametrize(
    ("name", "build", "reason"),
    [
        ("broken.pdf", lambda: b"%PDF-1.7\n" + b"\x00garbage" * 200, "damaged"),
        ("locked.pdf", files.encrypted_pdf, "encrypted"),
    ],
)
async def test_unreadable_pdfs_fail_with_a_reason(gateway, new_account, name, build, reason):
    account = await new_account()
    response = await upload(gateway, account, name, build())
    assert response.status_code == 202
    document = await wait_settled(gateway, account, response.json()["id"])
    assert document["status"] == "failed"
    assert reason in document["error"].lower()
    good = await uploaded_ready(gateway, account, "fine.txt", files.text_file())
    assert good["status"] == "ready"  # nothing else affected


async def test_a_path_in_the_filename_is_only_a_display_name(gateway, new_account, stack):
    account = await new_account()
    document = await uploaded_ready(gateway, account, "../../etc/evil.txt", files.text_file())
    assert document["filename"] == "evil.txt"
    stored = uploads_dir(stack) / account.id / document["id"] / "original"
    assert stored.read_bytes() == files.text_file()
    assert not (uploads_dir(stack).parent / "etc").exists()


async def test_same_file_twice_is_409_but_other_users_get_their_own(gateway, new_account):
    first, second = await new_account(), await new_account()
    original = await uploaded_ready(gateway, first, "a.txt", files.text_file())
    again = await upload(gateway, first, "renamed.txt", files.text_file())
    assert again.status_code == 409
    assert original["id"] in again.json()["error"]["message"]
    theirs = await uploaded_ready(gateway, second, "a.txt", files.text_file())
    assert theirs["id"] != original["id"]
    assert (await gateway.get("/documents", headers=first.headers)).json()["total"] == 1


async def test_another_users_document_is_404_everywhere_and_never_in_search(gateway, new_account):
    owner, intruder = await new_account(), await new_account()
    document = await uploaded_ready(
        gateway, owner, "secret.txt", files.text_file("Ultraviolet marmalade recipe.")
    )
    await uploaded_ready(gateway, intruder, "mine.txt", files.text_file("Nothing about jam here."))
    path = f"/documents/{document['id']}"
    for method, url, kwargs in [
        ("GET", path, {}),
        ("GET", f"{path}/content", {}),
        ("GET", f"{path}/text", {}),
        ("PATCH", path, {"json": {"title": "x"}}),
        ("DELETE", path, {}),
        ("POST", f"{path}/reindex", {}),
    ]:
        response = await gateway.request(method, url, headers=intruder.headers, **kwargs)
        assert response.status_code == 404, (method, url)
    results = (
        await gateway.get(
            "/documents/search", headers=intruder.headers, params={"q": "ultraviolet marmalade", "k": 50}
        )
    ).json()["results"]
    assert all(r["document_id"] != document["id"] for r in results)
    filtered = (
        await gateway.get(
            "/documents/search",
            headers=intruder.headers,
            params={"q": "marmalade", "document_id": document["id"]},
        )
    ).json()
    assert filtered["results"] == []
    still = await gateway.get(path, headers=owner.headers)
    assert still.status_code == 200 and still.json()["title"] == "secret.txt"


async def test_row_level_security_hides_rows_without_the_user_context(gateway, new_account, database_url):
    account = await new_account()
    await uploaded_ready(gateway, account, "rls.txt", files.text_file())
    role_url = make_url(database_url).set(username="pai_documents").render_as_string(hide_password=False)
    conn = await asyncpg.connect(role_url)
    try:
        assert await conn.fetchval("SELECT count(*) FROM documents.documents") == 0
        async with conn.transaction():
            await conn.execute("SELECT set_config('app.user_id', $1, true)", account.id)
            assert await conn.fetchval("SELECT count(*) FROM documents.documents") == 1
            with pytest.raises(asyncpg.InsufficientPrivilegeError):  # WITH CHECK: no writing as another
                await conn.execute("UPDATE documents.documents SET owner_id = $1", uuid.uuid4())
        assert await conn.fetchval("SELECT count(*) FROM documents.documents") == 0
    finally:
        await conn.close()


async def test_patch_list_filters_and_pages(gateway, new_account):
    account = await new_account()
    a = await uploaded_ready(gateway, account, "alpha.txt", files.text_file("Alpha sentence one."))
    await uploaded_ready(gateway, account, "beta.txt", files.text_file("Beta sentence two."))
    patched = await gateway.patch(
        f"/documents/{a['id']}",
        headers=account.headers,
        json={"title": "Renamed alpha", "description": "about alpha"},
    )
    assert patched.status_code == 200 and patched.json()["title"] == "Renamed alpha"
    assert (
        await gateway.patch(f"/documents/{a['id']}", headers=account.headers, json={"title": ""})
    ).status_code == 422
    listing = (await gateway.get("/documents", headers=account.headers, params={"q": "renamed"})).json()
    assert [d["id"] for d in listing["items"]] == [a["id"]]
    ready = (
        await gateway.get("/documents", headers=account.headers, params={"status": "ready", "limit": 1})
    ).json()
    assert ready["total"] == 2 and len(ready["items"]) == 1
    generic = (
        await gateway.get("/documents", headers=account.headers, params={"category": "generic"})
    ).json()
    assert generic["total"] == 2
    assert (
        await gateway.get("/documents", headers=account.headers, params={"status": "bogus"})
    ).status_code == 422


async def test_delete_hides_at_once_then_removes_vectors_file_and_row(
    gateway, new_account, vectors, stack, db
):
    account = await new_account()
    document = await uploaded_ready(gateway, account, "gone.pdf", files.three_page_pdf())
    user = uuid.UUID(account.id)
    where = {"document_id": document["id"]}
    assert await vectors.count(user, DOCUMENT_CHUNKS, where) == document["chunk_count"] > 0

    assert (await gateway.delete(f"/documents/{document['id']}", headers=account.headers)).status_code == 204
    assert (await gateway.get(f"/documents/{document['id']}", headers=account.headers)).status_code == 404
    assert (await gateway.get("/documents", headers=account.headers)).json()["total"] == 0
    search = await gateway.get("/documents/search", headers=account.headers, params={"q": "herons"})
    assert search.json()["results"] == []

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and await db.fetchval(
        "SELECT count(*) FROM documents.documents WHERE id = $1", uuid.UUID(document["id"])
    ):
        await asyncio.sleep(0.2)
    assert (
        await db.fetchval("SELECT count(*) FROM documents.documents WHERE id = $1", uuid.UUID(document["id"]))
        == 0
    )
    assert await vectors.count(user, DOCUMENT_CHUNKS, where) == 0
    assert not (uploads_dir(stack) / account.id / document["id"]).exists()


async def test_reindex_replaces_chunks_without_duplicates(gateway, new_account, vectors):
    account = await new_account()
    document = await uploaded_ready(gateway, account, "again.pdf", files.three_page_pdf())
    response = await gateway.post(f"/documents/{document['id']}/reindex", headers=account.headers)
    assert response.status_code == 202
    redone = await wait_settled(gateway, account, document["id"])
    assert redone["status"] == "ready" and redone["chunk_count"] == document["chunk_count"]
    count = await vectors.count(uuid.UUID(account.id), DOCUMENT_CHUNKS, {"document_id": document["id"]})
    assert count == document["chunk_count"]


async def test_a_document_without_its_extracted_text_gets_it_back_by_reindexing(gateway, new_account, stack):
    """As one ingested before the text was kept: the text is a clear 404, and a reindex makes it."""
    account = await new_account()
    document = await uploaded_ready(gateway, account, "old.docx", files.docx_file())
    kept = uploads_dir(stack) / account.id / document["id"] / "text.txt"
    assert "herons" in kept.read_text(encoding="utf-8")
    kept.unlink()
    missing = await gateway.get(f"/documents/{document['id']}/text", headers=account.headers)
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "text_not_extracted"
    response = await gateway.post(f"/documents/{document['id']}/reindex", headers=account.headers)
    assert response.status_code == 202
    assert (await wait_settled(gateway, account, document["id"]))["status"] == "ready"
    text = await gateway.get(f"/documents/{document['id']}/text", headers=account.headers)
    assert text.status_code == 200 and "herons" in text.text


async def test_purging_a_user_leaves_no_rows_files_or_vectors(
    gateway, new_account, new_admin, vectors, stack, db
):
    admin, account = await new_admin(), await new_account()
    await uploaded_ready(gateway, account, "one.txt", files.text_file("First purge sentence."))
    await uploaded_ready(gateway, account, "two.pdf", files.three_page_pdf())
    user = uuid.UUID(account.id)
    assert await vectors.count(user, DOCUMENT_CHUNKS) > 0
    assert (await gateway.delete(f"/admin/users/{account.id}", headers=admin.headers)).status_code == 204

    async def purged() -> bool:
        done = await db.fetchval(
            "SELECT completed_at IS NOT NULL FROM auth.purge_requests"
            " WHERE user_id = $1 AND service = 'documents'",
            user,
        )
        return bool(done)

    deadline = time.monotonic() + 30
    while not await purged() and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
    assert await purged()
    assert await db.fetchval("SELECT count(*) FROM documents.documents WHERE owner_id = $1", user) == 0
    assert await vectors.count(user, DOCUMENT_CHUNKS) == 0
    assert not (uploads_dir(stack) / account.id).exists()
