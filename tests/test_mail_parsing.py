"""parse_message and attachment_bytes on mail built here: every MIME shape the sync will meet,
and the broken ones, which must come back flagged but readable."""

from datetime import UTC, datetime, timedelta, timezone
from email.message import EmailMessage
from email.mime.application import MIMEApplication
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText

import pytest

from shared.text.mail import Address, AttachmentInfo, parse_message
from shared.text.mail import attachment_bytes as part_bytes

HEADERS = (
    b"From: a@example.com\r\nDate: Mon, 01 Jan 2024 12:00:00 +0000\r\nSubject: t\r\nMIME-Version: 1.0\r\n"
)
PDF = b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<<>>\nendobj\n"
PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(40))
STYLED_HTML = (
    "<html><head><style>p { color: red }</style><script>alert('x')</script></head>"
    "<body><h1>Title</h1><p>Hello <b>there</b></p><ul><li>one</li><li>two</li></ul>"
    '<img src="cid:logo@example.com"></body></html>'
)


def text_part(content_type: bytes, body: bytes, encoding: bytes = b"8bit") -> bytes:
    return (
        HEADERS
        + b"Content-Type: "
        + content_type
        + b"\r\nContent-Transfer-Encoding: "
        + encoding
        + b"\r\n\r\n"
        + body
    )


def alternative() -> EmailMessage:
    message = EmailMessage()
    message["Subject"] = "Quarterly résumé ✓"
    message["From"] = "José Núñez <jose@example.com>"
    message["To"] = "ann@example.com, Bob Smith <bob@example.com>"
    message["Cc"] = '"Smith, Carol" <carol@example.org>'
    message["Date"] = "Tue, 02 Jan 2024 09:30:00 +0200"
    message["Message-ID"] = "<abc.123@example.com>"
    message["In-Reply-To"] = "<parent@example.com>"
    message["References"] = "<root@example.com> <parent@example.com>"
    message.set_content("Hello   there,\n\n\n\n  see you   soon.  \n")
    message.add_alternative(STYLED_HTML, subtype="html")
    return message


def test_alternative_prefers_plain_and_reads_every_header() -> None:
    parsed = parse_message(alternative().as_bytes())

    assert parsed.subject == "Quarterly résumé ✓"
    assert parsed.sender == Address("José Núñez", "jose@example.com")
    assert parsed.to == [Address(None, "ann@example.com"), Address("Bob Smith", "bob@example.com")]
    assert parsed.cc == [Address("Smith, Carol", "carol@example.org")]
    assert parsed.bcc == []
    assert parsed.sent_at == datetime(2024, 1, 2, 7, 30, tzinfo=UTC)
    assert parsed.sent_at.utcoffset() == timedelta(0)
    assert parsed.message_id == "<abc.123@example.com>"
    assert parsed.in_reply_to == "<parent@example.com>"
    assert parsed.references == ["<root@example.com>", "<parent@example.com>"]
    assert parsed.body_text == "Hello there,\n\nsee you soon."
    assert parsed.body_html is not None and "<h1>Title</h1>" in parsed.body_html
    assert parsed.attachments == []
    assert parsed.size == len(alternative().as_bytes())
    assert parsed.malformed is False
    assert parsed.defects == []


def test_rfc2047_encoded_words_are_decoded() -> None:
    raw = (
        b"From: =?iso-8859-1?q?Andr=E9_Pirard?= <pirard@example.be>\r\n"
        b"To: =?utf-8?b?5bGx55Sw?= <yamada@example.jp>, undisclosed-recipients:;\r\n"
        b"Bcc: =?windows-1252?q?=93Boss=94?= <boss@example.com>\r\n"
        b"Subject: =?iso-8859-1?q?Caf=E9?= =?utf-8?b?IOKAkyBtZW51?=\r\n"
        b"Date: Fri, 21 Nov 1997 09:55:06 -0600\r\n\r\nbody\r\n"
    )

    parsed = parse_message(raw)

    assert parsed.subject == "Café \u2013 menu"
    assert parsed.sender == Address("André Pirard", "pirard@example.be")
    assert parsed.to == [Address("山田", "yamada@example.jp")]
    assert parsed.bcc == [Address("“Boss”", "boss@example.com")]
    assert parsed.sent_at == datetime(1997, 11, 21, 15, 55, 6, tzinfo=UTC)
    assert parsed.body_text == "body"
    assert parsed.malformed is False


def test_html_only_is_rendered_without_scripts_or_styles() -> None:
    message = EmailMessage()
    message["From"] = "shop@example.com"
    message["Date"] = "Mon, 01 Jan 2024 12:00:00 +0000"
    message.set_content(STYLED_HTML, subtype="html")

    parsed = parse_message(message.as_bytes())

    assert parsed.body_text == "Title\n\nHello there\n\n* one\n* two"
    assert "alert" not in parsed.body_text and "color" not in parsed.body_text
    assert parsed.body_html == STYLED_HTML + "\n"
    assert parsed.malformed is False


def test_empty_plain_part_falls_back_to_the_html() -> None:
    message = EmailMessage()
    message["From"] = "a@example.com"
    message["Date"] = "Mon, 01 Jan 2024 12:00:00 +0000"
    message.set_content("  \n \n")
    message.add_alternative("<p>Only <i>here</i></p>", subtype="html")

    assert parse_message(message.as_bytes()).body_text == "Only here"


def mixed() -> bytes:
    message = alternative()
    html = message.get_body(preferencelist=("html",))
    assert html is not None
    html.add_related(PNG, "image", "png", cid="<logo@example.com>", filename="logo.png", disposition="inline")
    message.add_attachment(PDF, maintype="application", subtype="pdf", filename="report.pdf")
    message.add_attachment(
        "Zoë\u2019s notes".encode(), maintype="text", subtype="plain", filename="résumé €.txt"
    )
    message.add_attachment(
        PNG, maintype="image", subtype="png", cid="<chart@example.com>", filename="chart.png"
    )
    forwarded = EmailMessage()
    forwarded["Subject"] = "inner"
    forwarded.set_content("inner body")
    message.add_attachment(forwarded)
    raw = message.as_bytes()
    assert b"filename*=utf-8''r%C3%A9sum%C3%A9%20%E2%82%AC.txt" in raw  # RFC 2231 on the wire
    return raw


def test_mixed_lists_attachments_but_not_inline_cid_images() -> None:
    raw = mixed()

    parsed = parse_message(raw)

    # Leaves: 0 plain, 1 html, 2 inline logo (Content-ID, inline: a body resource), 3 pdf, 4 txt,
    # 5 chart (Content-ID but disposition attachment: listed), 6 forwarded message.
    assert parsed.attachments == [
        AttachmentInfo("report.pdf", "application/pdf", len(PDF), 3),
        AttachmentInfo("résumé €.txt", "text/plain", len("Zoë\u2019s notes".encode()), 4),
        AttachmentInfo("chart.png", "image/png", len(PNG), 5),
        AttachmentInfo("attachment-6.eml", "message/rfc822", parsed.attachments[3].size, 6),
    ]
    assert parsed.body_text == "Hello there,\n\nsee you soon."
    assert parsed.subject == "Quarterly résumé ✓"
    assert parsed.malformed is False
    assert part_bytes(raw, 3) == PDF
    assert part_bytes(raw, 4) == "Zoë\u2019s notes".encode()
    assert part_bytes(raw, 5) == PNG
    assert part_bytes(raw, 2) == PNG  # any leaf can be read, listed or not
    forwarded = part_bytes(raw, 6)
    assert forwarded.startswith(b"Subject: inner\r\n") and forwarded.rstrip().endswith(b"inner body")
    assert parsed.attachments[3].size == len(forwarded)


def test_attachment_bytes_refuses_a_part_the_message_lacks() -> None:
    raw = mixed()
    for index in (7, -1, 1000):
        with pytest.raises(IndexError):
            part_bytes(raw, index)


def test_email_mime_classes_and_path_in_filename() -> None:
    message = MIMEMultipart()
    message["From"] = "Scanner <scanner@example.com>"
    message["Date"] = "Mon, 01 Jan 2024 12:00:00 +0000"
    message.attach(MIMEText("See attached.", "plain", "utf-8"))
    scan = MIMEApplication(PDF, "pdf")
    scan.add_header("Content-Disposition", "attachment", filename="../../etc/scan.pdf")
    message.attach(scan)
    calendar = MIMEText("BEGIN:VCALENDAR\r\nEND:VCALENDAR\r\n", "calendar", "utf-8")
    message.attach(calendar)  # unnamed, no Content-ID, not a body type: listed
    raw = message.as_bytes()

    parsed = parse_message(raw)

    assert parsed.body_text == "See attached."
    assert parsed.attachments == [
        AttachmentInfo("scan.pdf", "application/pdf", len(PDF), 1),
        AttachmentInfo("attachment-2.ics", "text/calendar", len(b"BEGIN:VCALENDAR\r\nEND:VCALENDAR\r\n"), 2),
    ]
    assert part_bytes(raw, 1) == PDF


@pytest.mark.parametrize(
    ("charset", "text"),
    [
        (b"iso-8859-1", "Café crème brûlée"),
        (b"windows-1252", "“Quoted” \u2013 5 € each"),
        (b"shift_jis", "日本語のメールです。"),
        (b"utf-8", "Grüße, 你好"),
    ],
)
def test_declared_charsets_are_honoured(charset: bytes, text: str) -> None:
    parsed = parse_message(text_part(b"text/plain; charset=" + charset, text.encode(charset.decode())))

    assert parsed.body_text == text
    assert parsed.malformed is False


def test_latin1_label_is_read_as_windows_1252() -> None:
    """Senders label cp1252 text iso-8859-1; reading the superset gives the real quotes."""
    parsed = parse_message(text_part(b"text/plain; charset=iso-8859-1", "“Hi” \u2013 5€".encode("cp1252")))

    assert parsed.body_text == "“Hi” \u2013 5€"
    assert parsed.malformed is False


def test_base64_and_quoted_printable_bodies_are_decoded() -> None:
    base64 = parse_message(text_part(b"text/plain; charset=utf-8", b"R3LDvMOfZQ==", b"base64"))
    quoted = parse_message(
        text_part(b"text/html; charset=iso-8859-1", b"<p>Caf=E9 =\r\nau lait</p>", b"quoted-printable")
    )

    assert base64.body_text == "Grüße"
    assert quoted.body_text == "Café au lait"
    assert quoted.body_html == "<p>Café au lait</p>"
    assert not base64.malformed and not quoted.malformed


def test_unknown_charset_falls_back_and_is_flagged() -> None:
    parsed = parse_message(text_part(b"text/plain; charset=x-klingon", "Grüße aus Köln".encode()))

    assert parsed.body_text == "Grüße aus Köln"
    assert parsed.malformed is True
    assert parsed.defects == ["the plain body declares an unknown charset 'x-klingon'"]


def test_wrong_charset_falls_back_and_is_flagged() -> None:
    sentence = "Les élèves étaient très contents de la fête à l'école, même après la pluie."
    long = parse_message(text_part(b"text/plain; charset=utf-8", sentence.encode("latin-1")))
    short = parse_message(text_part(b"text/html; charset=utf-8", "<b>Café</b>".encode("latin-1")))
    codec = parse_message(text_part(b"text/plain; charset=base64", b"plain words"))

    assert long.body_text == sentence
    assert long.defects == ["the plain body is not valid 'utf-8' text"]
    assert short.body_text == "Café"
    assert short.body_html == "<b>Café</b>"
    assert short.defects == ["the HTML body is not valid 'utf-8' text"]
    assert codec.body_text == "plain words"
    assert codec.malformed is True


def test_us_ascii_label_on_utf8_text_is_not_a_defect() -> None:
    parsed = parse_message(text_part(b"text/plain; charset=us-ascii", "naïve".encode()))

    assert (parsed.body_text, parsed.malformed) == ("naïve", False)


def test_raw_utf8_headers_are_read() -> None:
    raw = (
        b'From: "J\xc3\xb6rg M\xc3\xbcller" <joerg@example.de>\r\nSubject: Gr\xc3\xbc\xc3\x9fe\r\n'
        b"Date: Mon, 01 Jan 2024 12:00:00 +0100\r\n\r\nx"
    )

    parsed = parse_message(raw)

    assert parsed.subject == "Grüße"
    assert parsed.sender == Address("Jörg Müller", "joerg@example.de")
    parsed.sender.name.encode("utf-8")  # no surrogate escapes left: storable
    assert parsed.sent_at == datetime(2024, 1, 1, 11, 0, tzinfo=UTC)


def test_undecodable_header_bytes_are_flagged() -> None:
    parsed = parse_message(
        b"From: a@example.com\r\nDate: Mon, 01 Jan 2024 12:00:00 +0000\r\nSubject: ok \xff\r\n\r\nx"
    )

    assert parsed.subject == "ok \ufffd"
    assert parsed.malformed is True
    assert parsed.defects == ["Subject: has characters that could not be decoded"]


def test_dates_are_utc_and_fall_back_to_the_internal_date() -> None:
    internal = datetime(2024, 3, 5, 8, 0, tzinfo=timezone(timedelta(hours=5)))
    pacific = parse_message(b"From: a@example.com\r\nDate: Sun, 31 Dec 2023 20:15:00 -0800\r\n\r\nx")
    unknown_zone = parse_message(b"From: a@example.com\r\nDate: Mon, 01 Jan 2024 10:00:00 -0000\r\n\r\nx")
    missing = parse_message(b"From: a@example.com\r\n\r\nx", internal_date=internal)
    missing_no_fallback = parse_message(b"From: a@example.com\r\n\r\nx")
    garbled = parse_message(b"From: a@example.com\r\nDate: yesterday-ish\r\n\r\nx", internal_date=internal)
    naive_internal = parse_message(b"From: a@example.com\r\n\r\nx", internal_date=datetime(2024, 3, 5, 8))
    date_wins = parse_message(b"Date: Mon, 01 Jan 2024 10:00:00 +0000\r\n\r\n", internal_date=internal)

    assert pacific.sent_at == datetime(2024, 1, 1, 4, 15, tzinfo=UTC)
    assert pacific.sent_at.tzinfo == UTC
    assert unknown_zone.sent_at == datetime(2024, 1, 1, 10, 0, tzinfo=UTC)
    assert (pacific.malformed, unknown_zone.malformed) == (False, False)
    assert missing.sent_at == datetime(2024, 3, 5, 3, 0, tzinfo=UTC)
    assert missing.sent_at.tzinfo == UTC
    assert missing.malformed is True
    assert missing.defects == ["the Date header is missing"]
    assert missing_no_fallback.sent_at is None
    assert garbled.sent_at == datetime(2024, 3, 5, 3, 0, tzinfo=UTC)
    assert garbled.defects == ["Date: Invalid date value or format"]
    assert naive_internal.sent_at == datetime(2024, 3, 5, 8, 0, tzinfo=UTC)
    assert date_wins.sent_at == datetime(2024, 1, 1, 10, 0, tzinfo=UTC)


def test_broken_boundary_is_flagged_and_the_text_kept() -> None:
    raw = HEADERS + (
        b"Content-Type: multipart/mixed; boundary=declared\r\n\r\n"
        b"--actual\r\nContent-Type: text/plain\r\n\r\nhello world\r\n--actual--\r\n"
    )

    parsed = parse_message(raw)

    assert parsed.malformed is True
    assert "message: The claimed start boundary was never found." in parsed.defects
    assert parsed.subject == "t"
    assert parsed.sender == Address(None, "a@example.com")
    assert "hello world" in parsed.body_text
    assert parsed.attachments == []


def test_missing_close_boundary_keeps_every_part() -> None:
    raw = HEADERS + (
        b"Content-Type: multipart/mixed; boundary=b1\r\n\r\n"
        b"--b1\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nhello world\r\n"
        b"--b1\r\nContent-Type: application/pdf\r\nContent-Disposition: attachment; filename=a.pdf\r\n"
        b"Content-Transfer-Encoding: base64\r\n\r\nJVBERi0=\r\n"
    )

    parsed = parse_message(raw)

    assert parsed.malformed is True
    assert parsed.defects == [
        "message: A start boundary was found, but not the corresponding close boundary."
    ]
    assert parsed.body_text == "hello world"
    assert parsed.attachments == [AttachmentInfo("a.pdf", "application/pdf", 5, 1)]
    assert part_bytes(raw, 1) == b"%PDF-"


def test_bad_base64_is_flagged_with_what_decoded() -> None:
    parsed = parse_message(text_part(b"text/plain; charset=utf-8", b"aGVsbG8@@@", b"base64"))

    assert parsed.body_text == "hello"
    assert parsed.malformed is True
    assert any("base64" in defect for defect in parsed.defects)


def test_missing_headers_and_bad_addresses_are_flagged() -> None:
    no_from = parse_message(b"Date: Mon, 01 Jan 2024 12:00:00 +0000\r\nSubject: hi\r\n\r\nbody")
    bad_from = parse_message(b"From: <<<@@@>>>\r\nDate: Mon, 01 Jan 2024 12:00:00 +0000\r\n\r\nbody")
    sender_only = parse_message(
        b"Sender: Bot <bot@example.com>\r\nDate: Mon, 01 Jan 2024 12:00:00 +0000\r\n\r\nx"
    )

    assert (no_from.subject, no_from.sender, no_from.body_text) == ("hi", None, "body")
    assert no_from.defects == ["the From header is missing"]
    assert bad_from.sender is None
    assert bad_from.malformed is True
    assert bad_from.body_text == "body"
    assert sender_only.sender == Address("Bot", "bot@example.com")


def test_address_lists_the_strict_parser_rejects_are_read_leniently() -> None:
    raw = (
        b"From: Ann <ann@example.org>, x@\r\nTo: =?utf-8?q?Zo=C3=AB?= <zoe@example.org>, x@\r\n"
        b"Cc: Bob <bob@example.org>, nobody\r\nDate: Mon, 01 Jan 2024 12:00:00 +0000\r\n\r\nhi"
    )

    parsed = parse_message(raw)

    assert parsed.sender == Address("Ann", "ann@example.org")
    assert parsed.to[0] == Address("Zo\u00eb", "zoe@example.org")
    assert parsed.cc == [Address("Bob", "bob@example.org")]  # "nobody" has no domain to write to
    assert parsed.body_text == "hi"
    assert parsed.malformed is True


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"\x00" * 64,
        bytes(range(256)) * 4,
        b"\xff\xfe\xfd garbage \x80\x81 no headers at all",
        b"Subject: only a header",
        b"Content-Type: multipart/mixed\r\n\r\nno boundary parameter",
        b"Content-Type: multipart/mixed; boundary=x\r\n\r\n--x\r\n--x\r\n--x--",
        b'Content-Type: text/plain; charset="\r\nContent-Transfer-Encoding: base64\r\n\r\n====',
        b"From: \r\nTo: ,,,@\r\nDate: \r\nMessage-ID: \r\nReferences: junk\r\n\r\n",
        b"Content-Type: message/rfc822\r\n\r\n\xff\xfe",
        b"MIME-Version: 1.0\r\n" + b"Content-Type: multipart/mixed; boundary=n\r\n\r\n--n\r\n" * 200,
    ],
)
def test_garbage_never_raises_and_is_flagged(raw: bytes) -> None:
    parsed = parse_message(raw)

    assert parsed.malformed is True
    assert parsed.defects
    assert parsed.size == len(raw)
    assert "\x00" not in parsed.body_text
    parsed.body_text.encode("utf-8")
    parsed.subject.encode("utf-8")


def test_empty_bytes_give_an_empty_message() -> None:
    parsed = parse_message(b"")

    assert (parsed.subject, parsed.sender, parsed.to, parsed.body_text, parsed.attachments) == (
        "",
        None,
        [],
        "",
        [],
    )
    assert parsed.sent_at is None
    assert parsed.defects == ["the From header is missing", "the Date header is missing"]
