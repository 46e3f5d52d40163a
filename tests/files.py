"""Small real documents built in memory for upload tests (nothing binary is committed)."""

import io
from email.message import EmailMessage

import docx
from fpdf import FPDF
from pypdf import PdfReader, PdfWriter

KNOWN_SENTENCE = "The lighthouse keeper counted seventeen herons on the northern jetty."
FILLER = (
    "This paragraph talks about gardening, soil, seasons and the patience that vegetables ask of "
    "anyone who grows them. "
)


def pdf(pages: list[str]) -> bytes:
    document = FPDF()
    document.set_font("helvetica", size=11)
    for text in pages:
        document.add_page()
        document.multi_cell(0, 6, text)
    return bytes(document.output())


def three_page_pdf(sentence: str = KNOWN_SENTENCE) -> bytes:
    return pdf([FILLER * 4, FILLER * 2 + sentence + " " + FILLER, FILLER * 3])


def encrypted_pdf() -> bytes:
    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(pdf([FILLER]))))
    writer.encrypt(user_password="secret", owner_password="owner-secret", algorithm="AES-128")
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def docx_file(sentence: str = KNOWN_SENTENCE) -> bytes:
    document = docx.Document()
    document.add_heading("Field notes", level=1)
    document.add_paragraph(FILLER * 2)
    document.add_paragraph(sentence)
    out = io.BytesIO()
    document.save(out)
    return out.getvalue()


def html_file(sentence: str = KNOWN_SENTENCE) -> bytes:
    return (
        "<!doctype html><html><head><title>Notes</title><style>p{color:red}</style>"
        "<script>var hidden = 'never index me';</script></head><body>"
        f"<h1>Notes</h1><p>{FILLER}</p><p>{sentence}</p></body></html>"
    ).encode()


def eml_file(sentence: str = KNOWN_SENTENCE) -> bytes:
    message = EmailMessage()
    message["From"] = "Ada <ada@example.com>"
    message["To"] = "bob@example.com"
    message["Subject"] = "Harbour report"
    message["Date"] = "Tue, 03 Nov 2026 10:00:00 +0000"
    message["Message-ID"] = "<report-1@example.com>"
    message.set_content(f"{FILLER}\n\n{sentence}\n")
    return bytes(message)


def text_file(sentence: str = KNOWN_SENTENCE) -> bytes:
    return f"# Notes\n\n{FILLER}\n\n{sentence}\n".encode()


PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 200
