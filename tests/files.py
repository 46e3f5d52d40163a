"""Small real documents built in memory for upload tests (nothing binary is committed)."""

import io
import zipfile
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


def docx_bomb(inflated_bytes: int = 200 * 2**20) -> bytes:
    """A real DOCX whose ``word/document.xml`` inflates to ``inflated_bytes`` of empty
    paragraphs (about a thousand times its compressed size): the shape of a zip bomb."""
    source = io.BytesIO(docx_file("placeholder"))
    out = io.BytesIO()
    with zipfile.ZipFile(source) as original, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as bomb:
        for item in original.infolist():
            if item.filename != "word/document.xml":
                bomb.writestr(item, original.read(item.filename))
                continue
            head, _, tail = original.read(item.filename).partition(b"<w:body>")
            with bomb.open("word/document.xml", "w", force_zip64=True) as member:
                member.write(head + b"<w:body>")
                block = b"<w:p/>" * (1 << 16)
                for _ in range(inflated_bytes // len(block)):
                    member.write(block)
                member.write(tail)
    return out.getvalue()


def pdf_repeating_one_page(times: int) -> bytes:
    """A tiny PDF whose page tree lists the same page ``times`` times (page amplification)."""
    kids = " ".join(["3 0 R"] * times)
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        f"<< /Type /Pages /Kids [{kids}] /Count {times} >>".encode(),
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length 44 >>\nstream\nBT /F1 12 Tf 72 720 Td (Hello again) Tj ET\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out = io.BytesIO()
    out.write(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(out.tell())
        out.write(f"{number} 0 obj\n".encode() + body + b"\nendobj\n")
    xref = out.tell()
    out.write(f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode())
    for offset in offsets:
        out.write(f"{offset:010d} 00000 n \n".encode())
    out.write(f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode())
    return out.getvalue()
