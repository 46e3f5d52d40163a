"""Type detection and extraction on fixtures built here (no binary files in the repo)."""

import io
import random
import zipfile
from email.message import EmailMessage
from pathlib import Path

import docx
import pytest
from fpdf import FPDF
from pypdf import PdfReader, PdfWriter

from shared.text.chunking import chunk
from shared.text.extraction import (
    DOCX,
    EML,
    HTML,
    MARKDOWN,
    PDF,
    SUPPORTED,
    TEXT,
    Extracted,
    ExtractionError,
    Page,
    detect_type,
    extract,
)
from shared.text.mail import parse_message
from tests.files import pdf as make_pdf

PAGE_TWO_SENTENCE = "The migrating swallows reached the harbour at dawn."
PNG = bytes.fromhex("89504e470d0a1a0a0000000d4948445200000001000000010806000000") + b"\x1f\x15\xc4\x89"


def encrypt(data: bytes, user_password: str) -> bytes:
    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(data)))
    writer.encrypt(user_password=user_password, owner_password="owner-secret", algorithm="AES-128")
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def make_docx() -> bytes:
    document = docx.Document()
    document.add_heading("Quarterly plan", level=1)
    document.add_paragraph("First   paragraph about the garden.")
    document.add_paragraph("Second paragraph about the kitchen.")
    table = document.add_table(rows=2, cols=2)
    table.cell(0, 0).text = "Item"
    table.cell(0, 1).text = "Cost"
    table.cell(1, 0).text = "Shovel"
    table.cell(1, 1).text = "19.99"
    document.add_paragraph("After the table.")
    out = io.BytesIO()
    document.save(out)
    return out.getvalue()


def make_zip(entries: dict[str, str]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        for name, content in entries.items():
            archive.writestr(name, content)
    return out.getvalue()


def make_eml() -> bytes:
    message = EmailMessage()
    message["Subject"] = "=?iso-8859-1?q?R=E9union_d=27=E9quipe?="  # "Réunion d'équipe"
    message["From"] = "Alice <alice@example.org>"
    message["To"] = "Bob <bob@example.org>"
    message["Date"] = "Fri, 05 Jan 2024 10:00:00 +0000"
    message["Message-ID"] = "<1@example.org>"
    message.set_content("Bonjour Bob,\n\nLa réunion est à 10h au café.\n", charset="iso-8859-1")
    message.add_alternative("<html><body><p>HTML version only</p></body></html>", subtype="html")
    message.add_attachment(b"%PDF-1.4 fake", maintype="application", subtype="pdf", filename="agenda.pdf")
    return message.as_bytes()


def write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


# --- detect_type: content decides ---


def test_supported_lists_every_type() -> None:
    assert {PDF, DOCX, TEXT, MARKDOWN, HTML, EML} == SUPPORTED


def test_detects_pdf() -> None:
    assert detect_type(make_pdf(["hello"])[:8192]) == PDF


def test_detects_docx_built_by_python_docx() -> None:
    assert detect_type(make_docx()[:8192]) == DOCX


def test_detects_html() -> None:
    assert detect_type(b"<!DOCTYPE html><html><body>x</body></html>") == HTML
    assert detect_type(b"\xef\xbb\xbf  <!-- generated -->\n<HTML lang='en'><p>x</p></HTML>") == HTML
    assert detect_type(b"<meta charset='utf-8'>\n<head><title>t</title></head><body>x</body>") == HTML


def test_markdown_mentioning_body_tag_is_not_html() -> None:
    assert detect_type(b"# Notes\n\nPut scripts before </body> or in <head>.\n", "n.md") == MARKDOWN


def test_detects_eml() -> None:
    assert detect_type(make_eml()[:8192]) == EML


def test_detects_eml_with_folded_received_header() -> None:
    head = (
        b"Received: from mx.example.org\r\n\tby mail.example.org; Fri, 5 Jan 2024\r\n"
        b"Return-Path: <a@example.org>\r\nSubject: hi\r\n\r\nbody\r\n"
    )
    assert detect_type(head) == EML


def test_text_with_one_header_like_line_is_not_eml() -> None:
    assert detect_type(b"Subject: my shopping list\n\neggs\nmilk\n") == TEXT
    assert detect_type(b"From: me\nTo: you\nthis line is not a header\n\nbody") == TEXT


def test_detects_text_in_several_encodings() -> None:
    assert detect_type("Grüße aus Köln".encode()) == TEXT
    assert detect_type("Grüße aus Köln".encode("utf-16")) == TEXT  # with BOM
    assert detect_type("Café crème à la française, très bien.".encode("latin-1")) == TEXT


def test_text_head_cut_inside_a_utf8_character_is_still_text() -> None:
    assert detect_type(("é" * 5000).encode()[:8191]) == TEXT


def test_filename_only_breaks_the_text_markdown_tie() -> None:
    assert detect_type(b"# Title\n\nSome *notes*.", "notes.md") == MARKDOWN
    assert detect_type(b"# Title\n\nSome *notes*.", "notes.txt") == TEXT
    assert detect_type(b"# Title\n\nSome *notes*.") == TEXT


def test_content_wins_over_the_extension() -> None:
    assert detect_type(make_pdf(["hello"])[:8192], "evil.txt") == PDF
    assert detect_type(b"just some plain words", "x.pdf") == TEXT
    assert detect_type(PNG, "photo.md") is None


@pytest.mark.parametrize(
    "head",
    [
        pytest.param(PNG, id="png"),
        pytest.param(PNG[:8], id="png-signature-only"),  # mostly printable, still an image
        pytest.param(b"GIF89a\x01\x00\x01\x00\x80\x00\x00", id="gif-header"),
        pytest.param(make_zip({"a.txt": "hello"}), id="zip"),
        pytest.param(
            make_zip({"[Content_Types].xml": "<x/>", "_rels/.rels": "<x/>", "xl/workbook.xml": "<x/>"}),
            id="xlsx",
        ),
        pytest.param(random.Random(7).randbytes(4096), id="random"),
        pytest.param(b"MZ\x90\x00\x03\x00\x00\x00\x04\x00\x00\x00\xff\xff", id="exe"),
        pytest.param(b"", id="empty"),
    ],
)
def test_rejects_unsupported_content(head: bytes) -> None:
    assert detect_type(head[:8192], "file.txt") is None


@pytest.mark.parametrize("text", [b"BMW service invoice\n", b"ID3 tags explained\n", b"MZ notes\n"])
def test_text_that_starts_like_a_binary_signature_is_still_text(text: bytes) -> None:
    assert detect_type(text, "notes.txt") == TEXT


# --- extract ---


def test_pdf_pages_keep_their_numbers(tmp_path: Path) -> None:
    path = write(tmp_path, "a.pdf", make_pdf(["Page one text.", PAGE_TWO_SENTENCE, "Page three."]))
    extracted = extract(path, PDF)
    assert extracted.page_count == 3
    assert [page.number for page in extracted.pages] == [1, 2, 3]
    assert PAGE_TWO_SENTENCE in extracted.pages[1].text
    assert PAGE_TWO_SENTENCE in extracted.text
    offset = extracted.text.index(PAGE_TWO_SENTENCE)
    assert extracted.page_at(offset) == 2
    assert extracted.page_at(0) == 1


def test_pdf_with_a_user_password_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, "a.pdf", encrypt(make_pdf(["secret text"]), "secret"))
    with pytest.raises(ExtractionError, match="encrypted"):
        extract(path, PDF)


def test_pdf_encrypted_with_an_empty_password_is_read(tmp_path: Path) -> None:
    path = write(tmp_path, "a.pdf", encrypt(make_pdf(["open text", PAGE_TWO_SENTENCE]), ""))
    extracted = extract(path, PDF)
    assert extracted.page_count == 2
    assert extracted.pages[1] == Page(2, PAGE_TWO_SENTENCE)


def test_image_only_pdf_is_refused(tmp_path: Path) -> None:
    pdf = FPDF()
    pdf.add_page()
    pdf.rect(20, 20, 100, 60, style="F")
    path = write(tmp_path, "a.pdf", bytes(pdf.output()))
    with pytest.raises(ExtractionError, match="no extractable text"):
        extract(path, PDF)


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b"%PDF-1.7\n" + random.Random(3).randbytes(2000), id="garbage"),
        pytest.param(make_pdf(["Some text here."] * 3)[:600], id="truncated"),
    ],
)
def test_corrupt_pdf_is_refused(tmp_path: Path, data: bytes) -> None:
    with pytest.raises(ExtractionError, match="The PDF"):
        extract(write(tmp_path, "a.pdf", data), PDF)


def test_docx_paragraphs_and_table_in_order(tmp_path: Path) -> None:
    extracted = extract(write(tmp_path, "a.docx", make_docx()), DOCX)
    assert extracted.page_count is None
    assert [page.number for page in extracted.pages] == [None]
    assert extracted.text == (
        "Quarterly plan\n\nFirst paragraph about the garden.\n\nSecond paragraph about the kitchen."
        "\n\nItem | Cost\nShovel | 19.99\n\nAfter the table."
    )


def test_invalid_docx_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, "a.docx", make_zip({"word/document.xml": "<not-really/>"}))
    with pytest.raises(ExtractionError, match="not a valid DOCX"):
        extract(path, DOCX)


def test_html_drops_scripts_and_styles(tmp_path: Path) -> None:
    html = (
        "<!DOCTYPE html><html><head><title>Trip</title><style>p { color: red }</style>"
        "<script>var trackingSecret = 'xyzzy';</script></head><body><h1>Trip   notes</h1>"
        "<p>We walked to the lake.</p><script>alert('xyzzy')</script><p>Then home.</p></body></html>"
    )
    text = extract(write(tmp_path, "a.html", html.encode()), HTML).text
    assert "We walked to the lake." in text
    assert "Trip notes" in text
    assert "xyzzy" not in text
    assert "color" not in text
    assert "\n\n\n" not in text


def test_eml_headers_plain_body_and_attachment_names(tmp_path: Path) -> None:
    text = extract(write(tmp_path, "a.eml", make_eml()), EML).text
    assert text.startswith("Subject: Réunion d'équipe\nFrom: Alice <alice@example.org>\nTo: Bob")
    assert "Date: Fri, 05 Jan 2024 10:00:00 +0000" in text
    assert "La réunion est à 10h au café." in text
    assert "HTML version only" not in text  # the plain alternative is preferred
    assert text.endswith("Attachments: agenda.pdf")
    assert "%PDF" not in text


def test_eml_with_only_html_is_rendered(tmp_path: Path) -> None:
    message = EmailMessage()
    message["Subject"] = "News"
    message["From"] = "news@example.org"
    message.set_content(
        "<html><body><p>Big <b>news</b></p><script>x=1</script></body></html>", subtype="html"
    )
    text = extract(write(tmp_path, "a.eml", message.as_bytes()), EML).text
    assert "Big news" in text
    assert "x=1" not in text


@pytest.mark.parametrize("encoding", ["utf-8", "utf-16", "latin-1"])
def test_text_encodings(tmp_path: Path, encoding: str) -> None:
    content = "Grüße aus Köln.\r\n\r\n\r\n\r\nDer Café   hat   geöffnet.\x00 "
    extracted = extract(write(tmp_path, "a.txt", content.encode(encoding)), TEXT)
    assert extracted == Extracted([Page(None, "Grüße aus Köln.\n\nDer Café hat geöffnet.")], None)


def test_markdown_is_read_as_text(tmp_path: Path) -> None:
    extracted = extract(write(tmp_path, "a.md", b"# Title\n\n- one\n- two\n"), MARKDOWN)
    assert extracted.text == "# Title\n\n- one\n- two"


def test_empty_text_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ExtractionError, match="no text"):
        extract(write(tmp_path, "a.txt", b"  \n\n \t"), TEXT)


def test_unsupported_type_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ExtractionError, match="not supported"):
        extract(write(tmp_path, "a.png", PNG), "image/png")


def test_an_uploaded_eml_reads_like_synced_mail_and_its_attachments_are_extracted(tmp_path: Path) -> None:
    """One parser: the body of an uploaded .eml is the body the mail service stores for the
    same message; its readable attachments become sections of their own (page-like: no chunk
    mixes two), an unreadable one is still named."""
    message = EmailMessage()
    message["Subject"] = "Harbour crane invoice"
    message["From"] = "Port Office <office@port.example>"
    message["To"] = "me@example.org"
    message["Date"] = "Tue, 03 Mar 2026 09:15:00 +0100"
    message.set_content("Dear customer,\n\nplease find the invoice   attached.\n\n> quoted line\n")
    message.add_attachment(
        make_pdf(["Crane repair: 4,120 EUR due on 31 March."]),
        maintype="application",
        subtype="pdf",
        filename="invoice.pdf",
    )
    message.add_attachment(b"Notes about the gantry.", maintype="text", subtype="plain", filename="notes.txt")
    message.add_attachment(
        b"\x89PNG\r\n\x1a\n" + b"\x00" * 64, maintype="image", subtype="png", filename="logo.png"
    )
    raw = message.as_bytes()

    extracted = extract(write(tmp_path, "m.eml", raw), EML)
    synced = parse_message(raw)
    assert synced.body_text and synced.body_text in extracted.pages[0].text
    assert extracted.pages[0].text.endswith("Attachments: logo.png")
    assert [page.text for page in extracted.pages[1:]] == [
        "Attachment: invoice.pdf\n\nCrane repair: 4,120 EUR due on 31 March.",
        "Attachment: notes.txt\n\nNotes about the gantry.",
    ]
    chunks = chunk(extracted, "generic")
    assert any(c.text.endswith("31 March.") and "Dear customer" not in c.text for c in chunks)
