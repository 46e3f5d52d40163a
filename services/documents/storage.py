"""Files on disk: uploads are streamed straight from the request into the user's directory,
hashed and size-checked on the way, never held in memory and never named by the client."""

import asyncio
import hashlib
import re
import shutil
import unicodedata
import uuid
from collections.abc import AsyncIterable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote

import anyio
import structlog
from python_multipart.multipart import MultipartParser, MultipartState, parse_options_header

from shared.errors import BadRequest, DomainError, Invalid, TooLarge, UnsupportedMediaType
from shared.files import write_file

SNIFF_BYTES = 8192
MAX_FIELD_BYTES = 8192
# Text fields besides the file (title, description, ...): how many, and how much in all.
MAX_FIELDS = 16
MAX_FIELDS_TOTAL_BYTES = 64 * 1024
ORIGINAL = "original"
# The text ingestion extracted (what every chunk's offsets point into), for the document viewer.
EXTRACTED_TEXT = "text.txt"
log = structlog.get_logger(__name__)
_MULTIPART_OVERHEAD = 64 * 1024  # headers and small fields around the file part


def document_dir(uploads: Path, owner_id: uuid.UUID, document_id: uuid.UUID) -> Path:
    return uploads / str(owner_id) / str(document_id)


def original_path(uploads: Path, owner_id: uuid.UUID, document_id: uuid.UUID) -> Path:
    return document_dir(uploads, owner_id, document_id) / ORIGINAL


def text_path(uploads: Path, owner_id: uuid.UUID, document_id: uuid.UUID) -> Path:
    return document_dir(uploads, owner_id, document_id) / EXTRACTED_TEXT


async def write_text(path: Path, text: str) -> None:
    """Replace the kept text whole: the viewer reads the old text or the new, never half."""
    await asyncio.to_thread(write_file, path, text.encode("utf-8"))


def display_filename(raw: str | None) -> str:
    """The client's file name reduced to something safe to show: no path, no control chars."""
    name = (raw or "").replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(ch for ch in unicodedata.normalize("NFC", name) if unicodedata.category(ch)[0] != "C")
    name = re.sub(r"\s+", " ", name).strip().lstrip(".")
    return name[:255] or "upload"


_EXTENDED_FILENAME = re.compile(
    rb"filename\*\s*=\s*([A-Za-z0-9!#$&+.^_`|~-]+)'[^']*'([^;\s]+)", re.IGNORECASE
)


def part_filename(disposition: bytes, plain: bytes | None) -> str | None:
    """The file name of a part, exactly as the client meant it: RFC 5987's ``filename*=UTF-8''...``
    when given, else the plain ``filename`` as UTF-8 (RFC 7578; browsers send it so), and as
    Latin-1 only when those bytes are not UTF-8."""
    extended = _EXTENDED_FILENAME.search(disposition)
    if extended:
        charset, value = extended.group(1).decode("ascii"), extended.group(2).decode("ascii")
        try:
            return unquote(value, encoding=charset, errors="strict")
        except (LookupError, UnicodeDecodeError):
            pass
    if plain is None:
        return None
    try:
        return plain.decode("utf-8")
    except UnicodeDecodeError:
        return plain.decode("latin-1")


def remove_tree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


@dataclass
class ReceivedUpload:
    """A file part written to ``path``, with what we learned while streaming it."""

    path: Path
    filename: str | None = None
    size: int = 0
    head: bytes = b""
    sha256: str = ""
    fields: dict[str, str] = field(default_factory=dict)


class _Events:
    """Collects the parser's synchronous callbacks so the async side can act on them."""

    def __init__(self) -> None:
        self.items: list[tuple[str, bytes]] = []
        self._header_name = b""

    def callbacks(self) -> dict:
        def data_cb(kind: str):
            return lambda data, start, end: self.items.append((kind, bytes(data[start:end])))

        return {
            "on_part_begin": lambda: self.items.append(("begin", b"")),
            "on_header_field": data_cb("header_field"),
            "on_header_value": data_cb("header_value"),
            "on_header_end": lambda: self.items.append(("header_end", b"")),
            "on_headers_finished": lambda: self.items.append(("headers_done", b"")),
            "on_part_data": data_cb("data"),
            "on_part_end": lambda: self.items.append(("end", b"")),
        }

    def drain(self) -> list[tuple[str, bytes]]:
        items, self.items = self.items, []
        return items


async def receive_upload(
    body: AsyncIterable[bytes],
    content_type_header: str,
    content_length: int | None,
    destination: Path,
    max_bytes: int,
) -> ReceivedUpload:
    """Stream a ``multipart/form-data`` body: the ``file`` part goes to ``destination``, small
    text fields are kept. Too large as soon as the file passes ``max_bytes``; invalid or
    unsupported input is refused. On any error the partial file is removed."""
    content_type, params = parse_options_header(content_type_header)
    if content_type != b"multipart/form-data" or b"boundary" not in params:
        raise UnsupportedMediaType("Send the file as multipart/form-data")
    if content_length is not None and content_length > max_bytes + _MULTIPART_OVERHEAD:
        raise TooLarge(f"The file is larger than {max_bytes} bytes", code="file_too_large")

    events = _Events()
    parser = MultipartParser(params[b"boundary"], events.callbacks())
    upload = ReceivedUpload(path=destination)
    hasher = hashlib.sha256()
    await anyio.Path(destination.parent).mkdir(parents=True, exist_ok=True)
    try:
        async with await anyio.open_file(destination, "wb") as out:
            state = _PartState()
            received = 0
            async for chunk in body:
                received += len(chunk)
                if received > max_bytes + _MULTIPART_OVERHEAD:  # a chunked body declares no length
                    raise TooLarge(f"The file is larger than {max_bytes} bytes", code="file_too_large")
                parser.write(chunk)
                for kind, data in events.drain():
                    await state.handle(kind, data, upload, hasher, out, max_bytes)
            parser.finalize()
            for kind, data in events.drain():
                await state.handle(kind, data, upload, hasher, out, max_bytes)
            if parser.state != MultipartState.END:
                raise BadRequest("The upload ended before its closing boundary", code="incomplete_multipart")
        if not state.saw_file:
            raise Invalid("file: a file part named 'file' is required")
    except DomainError:
        await anyio.Path(destination).unlink(missing_ok=True)
        raise
    except Exception as exc:  # malformed multipart from python-multipart: its words stay in the log
        await anyio.Path(destination).unlink(missing_ok=True)
        log.info("invalid_multipart", error=str(exc)[:200])
        raise Invalid("The upload is not valid multipart data", code="invalid_multipart") from None
    upload.sha256 = hasher.hexdigest()
    return upload


class _PartState:
    """Where we are in the multipart stream: which part, its headers, its field value."""

    def __init__(self) -> None:
        self.headers: dict[str, bytes] = {}
        self.header_name = b""
        self.header_value = b""
        self.name: str | None = None
        self.is_file = False
        self.saw_file = False
        self.value = bytearray()
        self.fields = 0  # text parts seen
        self.field_bytes = 0  # their bytes in all

    async def handle(self, kind, data, upload: ReceivedUpload, hasher, out, max_bytes: int) -> None:
        if kind == "begin":
            self.headers, self.name, self.is_file, self.value = {}, None, False, bytearray()
        elif kind == "header_field":
            self.header_name += data
        elif kind == "header_value":
            self.header_value += data
        elif kind == "header_end":
            name = self.header_name.decode("latin-1").lower()
            self.headers[name] = bytes(self.header_value)  # raw: the file name may be UTF-8
            self.header_name, self.header_value = b"", b""
        elif kind == "headers_done":
            disposition = self.headers.get("content-disposition", b"")
            _, params = parse_options_header(disposition)
            self.name = params.get(b"name", b"").decode("utf-8", "replace")
            self.is_file = self.name == "file"
            if self.is_file:
                if self.saw_file:
                    raise Invalid("file: send exactly one file")
                self.saw_file = True
                upload.filename = part_filename(disposition, params.get(b"filename"))
            else:
                self.fields += 1
                if self.fields > MAX_FIELDS:
                    raise Invalid(f"at most {MAX_FIELDS} form fields besides the file")
        elif kind == "data" and self.is_file:
            upload.size += len(data)
            if upload.size > max_bytes:
                raise TooLarge(f"The file is larger than {max_bytes} bytes", code="file_too_large")
            if len(upload.head) < SNIFF_BYTES:
                upload.head += data[: SNIFF_BYTES - len(upload.head)]
            hasher.update(data)
            await out.write(data)
        elif kind == "data":
            self.value += data
            self.field_bytes += len(data)
            if len(self.value) > MAX_FIELD_BYTES:
                raise Invalid(f"{self.name}: value too long")
            if self.field_bytes > MAX_FIELDS_TOTAL_BYTES:
                raise TooLarge(f"The form fields besides the file exceed {MAX_FIELDS_TOTAL_BYTES} bytes")
        elif kind == "end" and not self.is_file and self.name:
            upload.fields[self.name] = self.value.decode("utf-8", "replace")


def _copy_sync(source: Path, destination: Path) -> ReceivedUpload:
    destination.parent.mkdir(parents=True, exist_ok=True)
    copied = ReceivedUpload(path=destination, filename=source.name)
    hasher = hashlib.sha256()
    try:
        with source.open("rb") as src, destination.open("wb") as out:
            while block := src.read(1024 * 1024):
                if len(copied.head) < SNIFF_BYTES:
                    copied.head += block[: SNIFF_BYTES - len(copied.head)]
                hasher.update(block)
                copied.size += len(block)
                out.write(block)
    except BaseException:
        destination.unlink(missing_ok=True)
        raise
    copied.sha256 = hasher.hexdigest()
    return copied


async def copy_file(source: Path, destination: Path) -> ReceivedUpload:
    """A file already on this machine (an import) copied to ``destination``, hashed on the way."""
    return await anyio.to_thread.run_sync(_copy_sync, source, destination)


def _sha256_sync(path: Path) -> str:
    hasher = hashlib.sha256()
    with path.open("rb") as file:
        while block := file.read(1024 * 1024):
            hasher.update(block)
    return hasher.hexdigest()


async def file_sha256(path: Path) -> str | None:
    """The stored file's hash read back from disk (None: no file)."""
    try:
        return await anyio.to_thread.run_sync(_sha256_sync, path)
    except FileNotFoundError:
        return None
