"""Type detection and text extraction of uploads. Pure and synchronous: the worker runs
``extract`` in a thread. Detection trusts the bytes, never the name a user gave the file,
so a renamed executable is refused and a mis-named PDF is still read as a PDF."""

import bisect
import codecs
import email.utils
import re
import tempfile
import zipfile
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import charset_normalizer
import filetype

from shared.text.mail import Address, AttachmentInfo, attachment_bytes, parse_message

PDF = "application/pdf"
DOCX = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
TEXT = "text/plain"
MARKDOWN = "text/markdown"
HTML = "text/html"
EML = "message/rfc822"
SUPPORTED: frozenset[str] = frozenset({PDF, DOCX, TEXT, MARKDOWN, HTML, EML})
# Attachments inside an uploaded .eml that are read (an attached message is not: no recursion),
# and the largest one read.
_ATTACHMENT_TYPES = frozenset({PDF, DOCX, TEXT, MARKDOWN, HTML})
MAX_ATTACHMENT_BYTES = 10 * 1024 * 1024

# Pages are joined with a paragraph break, so a page boundary is also a chunk boundary candidate.
PAGE_SEPARATOR = "\n\n"

_MARKDOWN_SUFFIXES = frozenset({".md", ".markdown", ".mdown", ".mkd", ".mkdn"})
# Longest first: the UTF-32 LE BOM begins with the UTF-16 LE one.
_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32-le"),
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)
_MIN_PRINTABLE = 0.95
_LEADING_JUNK = re.compile(r"\A(?:\s|<!--.*?-->|<\?xml[^>]*\?>)*", re.DOTALL)
_HTML_START = ("<!doctype html", "<html")
_HTML_EARLY = re.compile(r"<(?:head|body)[\s>]", re.IGNORECASE)
_HEADER_LINE = re.compile(r"([!-9;-~]+):")  # RFC 5322 field name: printable ASCII but ':'
_MAIL_HEADERS = frozenset(
    {"from", "to", "subject", "date", "message-id", "mime-version", "received", "return-path"}
)
_SPACES = re.compile(r"[ \t\f\v\u00a0\u2000-\u200a\u202f\u205f\u3000]+")
_BLANK_LINES = re.compile(r"\n{3,}")
_MAX_ERROR_DETAIL = 200


@dataclass(frozen=True)
class Page:
    """Text of one page; ``number`` is 1-based for PDFs and None for formats without pages."""

    number: int | None
    text: str


@dataclass(frozen=True)
class Extracted:
    pages: list[Page]
    page_count: int | None

    @cached_property
    def text(self) -> str:
        """All pages joined by ``PAGE_SEPARATOR``; chunk offsets index into this string."""
        return PAGE_SEPARATOR.join(page.text for page in self.pages)

    @cached_property
    def _page_starts(self) -> list[int]:
        starts, offset = [], 0
        for page in self.pages:
            starts.append(offset)
            offset += len(page.text) + len(PAGE_SEPARATOR)
        return starts

    def page_spans(self) -> list[tuple[int, int]]:
        """``(start, end)`` of each page's text within :attr:`text`."""
        return [
            (start, start + len(page.text)) for start, page in zip(self._page_starts, self.pages, strict=True)
        ]

    def page_at(self, offset: int) -> int | None:
        """Number of the page holding character ``offset`` of ``text`` (None without pages)."""
        index = bisect.bisect_right(self._page_starts, offset) - 1
        return self.pages[index].number if index >= 0 else None


class ExtractionError(Exception):
    """The file cannot be read; the message is plain language, safe to show the user."""


def detect_type(head: bytes, filename: str | None = None) -> str | None:
    """MIME type of a file from its first bytes (~8 KiB), or None when it is not supported.
    ``filename`` only tells Markdown from plain text, which no content test can do reliably."""
    if head.lstrip(b" \t\r\n").startswith(b"%PDF-"):
        return PDF
    if filetype.get_type(mime=DOCX).match(head):  # a zip whose first entries include word/
        return DOCX
    text = _decode_head(head)
    if text is None:
        return None
    if _looks_like_html(text):
        return HTML
    if _looks_like_mail(text):
        return EML
    if filename and Path(filename).suffix.lower() in _MARKDOWN_SUFFIXES:
        return MARKDOWN
    return TEXT


def _decode_head(head: bytes) -> str | None:
    """Text of a file's head if it is text: a BOM or UTF-8 (tolerating a character cut at the
    end of the head), else charset-normalizer's guess; NULs and control characters mean binary."""
    if not head:
        return None
    for bom, encoding in _BOMS:
        if head.startswith(bom):
            try:
                text = codecs.getincrementaldecoder(encoding)().decode(head[len(bom) :], final=False)
            except UnicodeDecodeError:
                return None
            break
    else:
        if b"\x00" in head:
            return None
        try:
            text = codecs.getincrementaldecoder("utf-8")().decode(head, final=False)
        except UnicodeDecodeError:
            # Not UTF-8: a known binary signature (an image, an archive) is no legacy-encoded text.
            # Only here: UTF-8 text such as "BMW invoice" starts like a BMP to filetype.
            if filetype.guess(head) is not None:
                return None
            best = charset_normalizer.from_bytes(head).best()
            if best is None:
                return None
            text = str(best)
    if not text:
        return None
    printable = sum(1 for c in text if c.isprintable() or c in "\n\r\t\f\v")
    return text if printable / len(text) >= _MIN_PRINTABLE else None


def _looks_like_html(text: str) -> bool:
    """A document that opens with a doctype or <html>, or opens with a tag and has a <head> or
    <body> soon after; a Markdown note that merely mentions <body> further down stays text."""
    rest = _LEADING_JUNK.sub("", text.lstrip("\ufeff"), count=1)
    lowered = rest[:1024].lower()
    return lowered.startswith(_HTML_START) or (
        lowered.startswith("<") and _HTML_EARLY.search(lowered) is not None
    )


def _looks_like_mail(text: str) -> bool:
    """RFC 822: the text opens with header lines (continuations allowed) up to the first blank
    line, and at least two of them are headers every mail carries."""
    lines = text.lstrip("\ufeff").split("\n")
    complete = lines[:-1] if len(lines) > 1 else lines  # the head may end mid-line
    known = 0
    for index, line in enumerate(complete):
        line = line.rstrip("\r")
        if not line:
            return index > 0 and known >= 2
        if line[0] in " \t" and index > 0:
            continue
        match = _HEADER_LINE.match(line)
        if match is None:
            return False
        known += match.group(1).lower() in _MAIL_HEADERS
    return known >= 2


@dataclass(frozen=True)
class ExtractionLimits:
    """What one file may cost to read. A file beyond a limit fails with a clear reason, before
    the expensive work where the file's own structure says so (a PDF's page count, a DOCX's zip
    directory), else as soon as the limit is crossed."""

    max_pages: int = 2000
    max_chars: int = 20_000_000
    # A DOCX is a zip: the sum of its members' uncompressed sizes, and that sum over the
    # compressed size (ordinary documents compress 3-10x; a zip bomb thousands of times).
    max_uncompressed_bytes: int = 256 * 2**20
    max_compression_ratio: float = 100.0


def extract(path: Path, mime: str, limits: ExtractionLimits = ExtractionLimits()) -> Extracted:
    """Text of the file at ``path`` detected as ``mime``, per page for PDFs. Runs in the
    caller's process: untrusted files go through ``shared.text.isolation`` instead."""
    if mime == PDF:
        extracted = _extract_pdf(path, limits)
    elif mime == DOCX:
        _check_archive(path, limits)
        extracted = Extracted([Page(None, _normalize(_docx_text(path)))], None)
    elif mime == HTML:
        extracted = Extracted([Page(None, _normalize(_html_text(_decode(path.read_bytes()))))], None)
    elif mime == EML:
        extracted = _extract_mail(path, limits)
    elif mime in (TEXT, MARKDOWN):
        extracted = Extracted([Page(None, _normalize(_decode(path.read_bytes())))], None)
    else:
        raise ExtractionError("This file type is not supported")
    if not extracted.text.strip():
        raise ExtractionError("The document contains no text")
    _check_chars(len(extracted.text), limits)
    return extracted


def _check_chars(count: int, limits: ExtractionLimits) -> None:
    if count > limits.max_chars:
        raise ExtractionError(f"The document has more than {limits.max_chars:,} characters of text")


def _check_archive(path: Path, limits: ExtractionLimits) -> None:
    """Refuse a zip whose directory announces more than we will inflate, before parsing it."""
    try:
        with zipfile.ZipFile(path) as archive:
            members = archive.infolist()
    except (zipfile.BadZipFile, OSError) as exc:
        raise ExtractionError("The file is not a valid DOCX document") from exc
    total = sum(member.file_size for member in members)
    packed = max(1, sum(member.compress_size for member in members))
    if total > limits.max_uncompressed_bytes:
        raise ExtractionError(
            f"The document unpacks to {total / 2**20:,.0f} MB; at most "
            f"{limits.max_uncompressed_bytes / 2**20:,.0f} MB are read"
        )
    if total > 2**20 and total / packed > limits.max_compression_ratio:
        raise ExtractionError(
            f"The document is compressed {total / packed:,.0f} times (at most "
            f"{limits.max_compression_ratio:g}): refused as a possible zip bomb"
        )


def _extract_pdf(path: Path, limits: ExtractionLimits) -> Extracted:
    """One Page per PDF page that has text. A page that fails to parse is skipped, so a partly
    damaged PDF still yields what it can; a PDF with no text at all is refused as image-only."""
    # The parsers are imported where they are used: they run in the extraction child, and the
    # services that only import this module's types and detection do not carry them (~25 MiB).
    from pypdf import PasswordType, PdfReader
    from pypdf.errors import DependencyError

    try:
        reader = PdfReader(path)
        if reader.is_encrypted and reader.decrypt("") == PasswordType.NOT_DECRYPTED:
            raise ExtractionError("The PDF is encrypted")
        page_count = len(reader.pages)
    except ExtractionError:
        raise
    except DependencyError as exc:
        raise ExtractionError("The PDF uses an unsupported encryption") from exc
    except Exception as exc:  # pypdf raises many types on malformed files
        raise ExtractionError(f"The PDF is damaged: {_detail(exc)}") from exc
    if page_count > limits.max_pages:
        raise ExtractionError(f"The PDF has {page_count:,} pages; at most {limits.max_pages:,} are read")
    pages, failure, chars = [], None, 0
    for number in range(1, page_count + 1):
        try:
            text = _normalize(reader.pages[number - 1].extract_text() or "")
        except Exception as exc:
            failure = exc
            continue
        if text:
            pages.append(Page(number, text))
            chars += len(text)
            _check_chars(chars, limits)
    if not pages:
        if failure is not None:
            raise ExtractionError(f"The PDF is damaged: {_detail(failure)}") from failure
        raise ExtractionError("The PDF has no extractable text (scanned images?)")
    return Extracted(pages, page_count)


def _detail(exc: Exception) -> str:
    detail = " ".join(str(exc).split()) or type(exc).__name__
    return detail[:_MAX_ERROR_DETAIL]


def _docx_text(path: Path) -> str:
    """Paragraphs and tables in document order; a table row becomes one ``a | b | c`` line
    (merged cells, which python-docx repeats, once)."""
    import docx  # in the child only, as pypdf above
    from docx.table import Table

    try:
        document = docx.Document(str(path))
        blocks = []
        for item in document.iter_inner_content():
            if isinstance(item, Table):
                rows = []
                for row in item.rows:
                    cells, seen = [], set()
                    for cell in row.cells:
                        if id(cell._tc) not in seen:
                            seen.add(id(cell._tc))
                            cells.append(" ".join(cell.text.split()))
                    rows.append(" | ".join(c for c in cells if c))
                blocks.append("\n".join(r for r in rows if r))
            else:
                blocks.append(item.text)
    except Exception as exc:  # python-docx raises zip, XML and key errors on bad packages
        raise ExtractionError("The file is not a valid DOCX document") from exc
    return "\n\n".join(b for b in blocks if b.strip())


def _html_text(html: str) -> str:
    """inscriptis renders the page as a browser would lay it out, dropping scripts and styles."""
    if not html.strip():
        return ""
    from inscriptis import get_text  # where HTML is read, as pypdf above

    try:
        return get_text(html)
    except Exception as exc:
        raise ExtractionError("The HTML document could not be read") from exc


def _extract_mail(path: Path, limits: ExtractionLimits) -> Extracted:
    """An ``.eml`` through the mail service's parser (``shared.text.mail``): a header block and
    the body as the first section, then each readable attachment (PDF, DOCX, text, HTML) as a
    section of its own, so its text is searchable and a chunk never mixes two of them."""
    raw = path.read_bytes()
    message = parse_message(raw)
    headers = [f"Subject: {message.subject}"] if message.subject else []
    for name, addresses in (
        ("From", [message.sender] if message.sender else []),
        ("To", message.to),
        ("Cc", message.cc),
    ):
        if addresses:
            headers.append(f"{name}: " + ", ".join(_address(a) for a in addresses))
    if message.sent_at is not None:
        headers.append(f"Date: {email.utils.format_datetime(message.sent_at)}")
    unread = []
    sections = []
    for attachment in message.attachments:
        text = _attachment_text(raw, attachment, limits)
        if text:
            sections.append(Page(None, _normalize(f"Attachment: {attachment.filename}\n\n{text}")))
        else:
            unread.append(attachment.filename)
    first = ["\n".join(headers), message.body_text]
    if unread:
        first.append("Attachments: " + ", ".join(unread))
    main = Page(None, _normalize("\n\n".join(block for block in first if block.strip())))
    return Extracted([main, *sections], None)


def _address(address: Address) -> str:
    return f"{address.name} <{address.email}>" if address.name else address.email


def _attachment_text(raw: bytes, attachment: AttachmentInfo, limits: ExtractionLimits) -> str | None:
    """Text of one attachment of a message, or None when it is too large, of a type we do not
    read (images, archives, attached messages), or unreadable."""
    if attachment.size > MAX_ATTACHMENT_BYTES:
        return None
    try:
        data = attachment_bytes(raw, attachment.part_index)
    except IndexError:
        return None
    mime = detect_type(data[:8192], attachment.filename)
    if mime not in _ATTACHMENT_TYPES:
        return None
    with tempfile.NamedTemporaryFile(suffix=".attachment") as handle:
        handle.write(data)
        handle.flush()
        try:
            return extract(Path(handle.name), mime, limits).text
        except ExtractionError:
            return None


def _decode(data: bytes) -> str:
    """Bytes to text: a BOM decides, then UTF-8, then charset-normalizer's best guess."""
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            return data[len(bom) :].decode(encoding, errors="replace")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        pass
    best = charset_normalizer.from_bytes(data).best()
    if best is None:
        raise ExtractionError("The file is not readable text")
    return str(best)


def _normalize(text: str) -> str:
    """One space between words, no trailing spaces, at most one blank line between
    paragraphs, no NULs, ``\\n`` line ends: stable offsets and tidy chunks."""
    text = text.replace("\x00", "").replace("\r\n", "\n").replace("\r", "\n")
    lines = (_SPACES.sub(" ", line).strip() for line in text.split("\n"))
    return _BLANK_LINES.sub("\n\n", "\n".join(lines)).strip()
