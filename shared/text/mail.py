"""Parsing of raw RFC 822 messages: Gmail's ``format=raw`` in the mail service and uploaded
``.eml`` files in the documents service go through this one parser, so the same message gives
the same text both ways.

Pure and synchronous. Mail in the wild is often broken, and one bad message must not stop a
sync, so ``parse_message`` never raises: it returns whatever could be read and sets
``malformed`` with the reasons in ``defects``. The stdlib ``email`` package does the MIME work
(``policy.default`` decodes RFC 2047 words and RFC 2231 parameters); inscriptis renders HTML.

Attachment rule. A leaf part (see ``_leaves``) that is not the chosen plain or HTML body is
listed as an attachment when

* its disposition is ``attachment`` (always, Content-ID or not), or
* it has no Content-ID and either has a filename or is not ``text/plain``/``text/html``.

So inline parts with a Content-ID (images the HTML refers to by ``cid:``) are resources of the
body, not attachments, unless they are marked ``attachment``; unnamed extra text parts
(alternative renderings) are not listed; a named inline PDF (as Apple Mail sends them) or an
unnamed ``text/calendar`` invite is listed.
"""

import codecs
import email
import email.errors
import email.header
import email.policy
import email.utils
import re
from collections.abc import Callable, Iterator
from contextlib import suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from mimetypes import guess_extension
from typing import TypeVar, cast

import charset_normalizer

_POLICY = email.policy.default
# An attached message is given back as CRLF mail, as written, not refolded.
_MESSAGE_BYTES_POLICY = email.policy.SMTP.clone(refold_source="none")
# Labels mail clients use for a superset they really wrote (as browsers read them): decoding
# with the superset loses nothing and spares a false "wrong charset".
_SUPERSETS = {
    "ascii": "utf-8",
    "iso8859-1": "cp1252",
    "shift_jis": "cp932",
    "gb2312": "gb18030",
    "gbk": "gb18030",
    "euc_kr": "cp949",
}
_BODY_TYPES = frozenset({"text/plain", "text/html"})
_MSG_ID = re.compile(r"<[^<>\s]+>")
_SPACES = re.compile(r"[ \t\f\v\u00a0\u2000-\u200a\u202f\u205f\u3000]+")
_BLANK_LINES = re.compile(r"\n{3,}")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")

T = TypeVar("T")


@dataclass(frozen=True)
class Address:
    name: str | None
    email: str


@dataclass(frozen=True)
class AttachmentInfo:
    """``size`` is of the decoded content; ``part_index`` finds it again (``attachment_bytes``)."""

    filename: str
    mime_type: str
    size: int
    part_index: int


@dataclass(frozen=True)
class ParsedMessage:
    subject: str
    sender: Address | None
    to: list[Address]
    cc: list[Address]
    bcc: list[Address]
    sent_at: datetime | None
    message_id: str | None
    in_reply_to: str | None
    references: list[str]
    body_text: str
    body_html: str | None
    attachments: list[AttachmentInfo]
    size: int
    malformed: bool
    defects: list[str]


def parse_message(raw: bytes, *, internal_date: datetime | None = None) -> ParsedMessage:
    """Everything the service stores about one message. ``internal_date`` (Gmail's receive
    time) stands in for a missing or unreadable Date header. Never raises."""
    defects: list[str] = []
    try:
        return _parse(raw, internal_date, defects)
    except Exception as exc:  # a last guard: the stdlib parser has had crashes on hostile input
        defects.append(f"message could not be parsed ({type(exc).__name__})")
        return ParsedMessage(
            subject="",
            sender=None,
            to=[],
            cc=[],
            bcc=[],
            sent_at=_utc(internal_date),
            message_id=None,
            in_reply_to=None,
            references=[],
            body_text="",
            body_html=None,
            attachments=[],
            size=len(raw),
            malformed=True,
            defects=defects,
        )


def attachment_bytes(raw: bytes, part_index: int) -> bytes:
    """The decoded content of leaf ``part_index`` (as in ``AttachmentInfo``); an attached
    message comes back as its RFC 822 bytes. Raises ``IndexError`` for an index it lacks."""
    message = _message(raw)
    if part_index >= 0:
        for index, (_, part) in enumerate(_leaves(message)):
            if index == part_index:
                return _content_bytes(part)
    raise IndexError(f"the message has no part {part_index}")


def _parse(raw: bytes, internal_date: datetime | None, defects: list[str]) -> ParsedMessage:
    message = _message(raw)
    leaves = list(_leaves(message))

    def safe(what: str, read: Callable[[], T], default: T) -> T:
        try:
            return read()
        except Exception as exc:
            defects.append(f"{what} could not be read ({type(exc).__name__})")
            return default

    for name in ("From", "Date"):  # the two headers RFC 5322 requires
        if name not in message:
            defects.append(f"the {name} header is missing")
    senders = safe("From", lambda: _addresses(message, "From", defects), [])
    if not senders and "From" not in message:
        senders = safe("Sender", lambda: _addresses(message, "Sender", defects), [])
    sent_at = safe("Date", lambda: _date(message, defects), None) or _utc(internal_date)

    plain = safe("the plain body", lambda: _body_part(message, "plain"), None)
    html = safe("the HTML body", lambda: _body_part(message, "html"), None)
    body_text = _normalize(safe("the plain body", lambda: _text(plain, "the plain body", defects), ""))
    body_html = safe("the HTML body", lambda: _text(html, "the HTML body", defects), None)
    if body_html is not None:
        body_html = body_html.replace("\x00", "")  # PostgreSQL text cannot hold NUL
    if not body_text and body_html:
        from inscriptis import get_text  # with lxml ~10 MiB: imported by the first HTML-only mail

        body_text = _normalize(safe("the HTML body", lambda: get_text(body_html), ""))
    # A multipart whose boundary never appears is left as one text blob: keep it readable.
    broken = message.get_content_maintype() == "multipart" and not message.is_multipart()
    if plain is None and html is None and broken:
        body_text = _normalize(safe("the body", lambda: _text(message, "the body", defects), ""))

    bodies = [part for part in (plain, html) if part is not None]
    attachments = [
        info
        for index, (section, part) in enumerate(leaves)
        if not any(part is body for body in bodies)
        and (info := safe(f"part {section}", lambda p=part, i=index: _attachment(p, i), None))
    ]
    subject = safe("Subject", lambda: _subject(message, defects), "")
    to, cc, bcc = (
        safe(name, lambda n=name: _addresses(message, n, defects), []) for name in ("To", "Cc", "Bcc")
    )
    message_id = safe("Message-ID", lambda: _ids(message, "Message-ID"), [])
    in_reply_to = safe("In-Reply-To", lambda: _ids(message, "In-Reply-To"), [])
    references = safe("References", lambda: _ids(message, "References"), [])
    # Decoding above (bodies, attachment sizes) is what records transfer-encoding defects.
    defects.extend(_part_defects(message))
    return ParsedMessage(
        subject=subject,
        sender=senders[0] if senders else None,
        to=to,
        cc=cc,
        bcc=bcc,
        sent_at=sent_at,
        message_id=message_id[0] if message_id else None,
        in_reply_to=in_reply_to[0] if in_reply_to else None,
        references=references,
        body_text=body_text,
        body_html=body_html,
        attachments=attachments,
        size=len(raw),
        malformed=bool(defects),
        defects=defects,
    )


def _message(raw: bytes) -> EmailMessage:
    # With policy.default the parser builds EmailMessage objects (the stubs only say Message).
    return cast(EmailMessage, email.message_from_bytes(raw, policy=_POLICY))


def _parts(message: EmailMessage) -> Iterator[tuple[str, EmailMessage, bool]]:
    """Every part in ``walk()`` order with its IMAP-style section ("1.2") and whether it is a
    leaf. An attached message (``message/*``) is a leaf, not opened: to a user it is one
    attachment. Iterative, so absurd nesting cannot exhaust the stack."""
    stack: list[tuple[str, EmailMessage]] = [("", message)]
    while stack:
        section, part = stack.pop()
        container = part.is_multipart() and part.get_content_maintype() != "message"
        yield section, part, not container
        if container:
            children = cast(list[EmailMessage], part.get_payload())
            prefix = f"{section}." if section else ""
            stack.extend((f"{prefix}{n}", child) for n, child in reversed(list(enumerate(children, 1))))


def _leaves(message: EmailMessage) -> Iterator[tuple[str, EmailMessage]]:
    return ((section or "1", part) for section, part, leaf in _parts(message) if leaf)


def _body_part(message: EmailMessage, subtype: str) -> EmailMessage | None:
    """``get_body``'s choice (it knows alternative, related and mixed). It crashes on a nested
    multipart whose boundary broke (that part's defects already say so); the first such text
    leaf not marked as an attachment is the best guess then."""
    content_type = f"text/{subtype}"
    try:
        part = cast(EmailMessage | None, message.get_body(preferencelist=(subtype,)))
    except (AttributeError, TypeError, IndexError):
        leaves = (part for _, part in _leaves(message) if not part.is_attachment())
        part = next((part for part in leaves if part.get_content_type() == content_type), None)
    return part if part is not None and part.get_content_type() == content_type else None


def _text(part: EmailMessage | None, what: str, defects: list[str]) -> str | None:
    """The part's text in its declared charset. An unknown or wrong charset is not fatal:
    the bytes are read as UTF-8 if they are, else as charset-normalizer guesses."""
    if part is None:
        return None
    data = _content_bytes(part)
    declared = part.get_content_charset()
    try:
        codec = codecs.lookup(declared or "ascii").name
    except (LookupError, ValueError):  # ValueError: a NUL in the name
        defects.append(f"{what} declares an unknown charset {declared!r}")
        return _guess(data)
    for name in dict.fromkeys((_SUPERSETS.get(codec, codec), codec)):
        try:
            return data.decode(name)
        except LookupError:  # a codec that is not a text encoding (base64, rot13)
            defects.append(f"{what} declares an unknown charset {declared!r}")
            return _guess(data)
        except UnicodeError:
            continue
    if declared:
        defects.append(f"{what} is not valid {declared!r} text")
    else:
        defects.append(f"{what} has 8-bit text but no charset")
    return _guess(data)


def _guess(data: bytes) -> str:
    """UTF-8 if the bytes are; else charset-normalizer's guess. Among its equally likely
    guesses, windows-1252 wins: it is the usual truth behind a wrong label and what browsers
    assume. UTF-16/32 guesses are ignored, since mail text without a BOM never is."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        pass
    matches = [m for m in charset_normalizer.from_bytes(data) if not m.encoding.startswith("utf_")]
    calm = [m for m in matches if m.chaos == matches[0].chaos] if matches else []
    if not calm or any("cp1252" in m.could_be_from_charset for m in calm):
        return data.decode("cp1252", errors="replace")
    return str(calm[0])


def _content_bytes(part: EmailMessage) -> bytes:
    if part.get_content_maintype() == "message" and part.is_multipart():
        # message/rfc822 holds one message; message/delivery-status a list of header blocks.
        blocks = cast(list[EmailMessage], part.get_payload())
        return b"".join(block.as_bytes(policy=_MESSAGE_BYTES_POLICY) for block in blocks)
    payload = part.get_payload(decode=True)
    return payload if isinstance(payload, bytes) else b""


def _attachment(part: EmailMessage, index: int) -> AttachmentInfo | None:
    disposition = part.get_content_disposition()
    filename = _filename(part.get_filename())
    has_cid = "Content-ID" in part
    mime_type = part.get_content_type()
    if part.get_content_maintype() == "multipart":  # a container that lost its boundary
        return None
    listed = disposition == "attachment" or (
        not has_cid and (filename is not None or mime_type not in _BODY_TYPES)
    )
    if not listed:
        return None
    if filename is None:
        filename = f"attachment-{index}{guess_extension(mime_type) or ''}"
    return AttachmentInfo(filename, mime_type, len(_content_bytes(part)), index)


def _filename(value: str | None) -> str | None:
    """The name a user would see: directories and control characters dropped, since the name
    will end up in a download's Content-Disposition."""
    if value is None:
        return None
    name = _clean(re.split(r"[/\\]", value)[-1])
    return name or None


def _addresses(message: EmailMessage, name: str, defects: list[str]) -> list[Address]:
    """The header's mailboxes, groups flattened. One without a domain cannot be written to, so
    it is left out (its header's defect says why)."""
    try:
        headers = message.get_all(name) or []
    except Exception as exc:  # the strict parser has crashed on some broken address lists
        defects.append(f"{name}: could not be parsed strictly ({type(exc).__name__})")
        return _lenient_addresses(message, name)
    result: list[Address] = []
    for header in headers:
        _header_defects(name, header, defects)
        for address in getattr(header, "addresses", ()):
            if address.username and address.domain:
                display = _clean(address.display_name)
                result.append(Address(display or None, _clean(address.addr_spec)))
    return result


def _lenient_addresses(message: EmailMessage, name: str) -> list[Address]:
    """The legacy parser's reading of the raw header: forgiving, and better than nothing."""
    values = [str(value) for key, value in message.raw_items() if key.lower() == name.lower()]
    result: list[Address] = []
    for display, addr_spec in email.utils.getaddresses(values):
        if "@" in addr_spec:
            # An encoded word it cannot decode (unknown charset, bad bytes) stays raw text.
            with suppress(LookupError, ValueError, email.errors.HeaderParseError):
                display = str(email.header.make_header(email.header.decode_header(display)))
            result.append(Address(_clean(display) or None, _clean(addr_spec)))
    return result


def _date(message: EmailMessage, defects: list[str]) -> datetime | None:
    header = message["Date"]
    if header is None:
        return None
    _header_defects("Date", header, defects)
    value = getattr(header, "datetime", None)
    return _utc(value)


def _utc(value: datetime | None) -> datetime | None:
    """A naive time is taken as UTC: that is what a ``-0000`` zone means in a Date header."""
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _subject(message: EmailMessage, defects: list[str]) -> str:
    header = message["Subject"]
    if header is None:
        return ""
    _header_defects("Subject", header, defects)
    return _clean(str(header))


def _ids(message: EmailMessage, name: str) -> list[str]:
    """Message ids in their ``<id>`` form, which is how threading headers compare them. A bare
    value without brackets is kept as one id rather than lost. Ids are plain ASCII tokens, so
    the raw header is read: the strict Message-ID parser has crashed on broken ones."""
    value = next((value for key, value in message.raw_items() if key.lower() == name.lower()), None)
    if value is None:
        return []
    text = _clean(str(value))
    return _MSG_ID.findall(text) or ([text] if text else [])


def _header_defects(name: str, header: object, defects: list[str]) -> None:
    for defect in getattr(header, "defects", ()):
        defects.append(f"{name}: {_describe(defect)}")
    if "\ufffd" in str(header):  # 8-bit bytes that are not UTF-8, or an unknown charset
        defects.append(f"{name}: has characters that could not be decoded")


def _part_defects(message: EmailMessage) -> list[str]:
    return [
        f"part {section}: {_describe(defect)}" if section else f"message: {_describe(defect)}"
        for section, part, _ in _parts(message)
        for defect in part.defects
    ]


def _describe(defect: Exception) -> str:
    """The defect's own message, else its class docstring ("The claimed start boundary was
    never found."), else its class name."""
    text = str(defect) or (type(defect).__doc__ or "").strip().split("\n")[0]
    return text or type(defect).__name__


def _clean(value: str) -> str:
    """Header text on one line. Raw 8-bit header bytes reach us as surrogate escapes, which
    no database can store: they are read as the UTF-8 they almost always are."""
    try:
        value = value.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    except UnicodeError:
        value = value.encode("utf-8", "replace").decode("utf-8")
    return " ".join(_CONTROL.sub(" ", value).split())


def _normalize(text: str | None) -> str:
    """One space between words, no trailing spaces, at most one blank line between
    paragraphs, ``\\n`` line ends: what a reader or a search index wants."""
    if not text:
        return ""
    text = _CONTROL.sub("", text.replace("\r\n", "\n").replace("\r", "\n"))
    lines = (_SPACES.sub(" ", line).strip() for line in text.split("\n"))
    return _BLANK_LINES.sub("\n\n", "\n".join(lines)).strip()
