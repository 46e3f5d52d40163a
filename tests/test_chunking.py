"""Classification and chunking: category shapes, exact offsets, pages, determinism."""

import itertools
import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest
from fpdf import FPDF

from shared.text.chunking import ChunkSizes, TextChunk, chunk, classify
from shared.text.extraction import PDF, Extracted, Page, extract
from tests.support import ROOT

WORDS = [
    *("the", "a", "river", "house", "garden", "light", "morning", "story", "old", "young", "walked"),
    *("found", "quietly", "beneath", "over", "letter", "window", "autumn", "bright", "cold", "harbour"),
    *("village", "road", "mother", "brother", "evening", "across"),
]


def prose(seed: int, paragraphs: int, sentences: tuple[int, int] = (2, 8)) -> str:
    rng = random.Random(seed)

    def sentence() -> str:
        return " ".join(rng.choice(WORDS) for _ in range(rng.randint(5, 25))).capitalize() + "."

    return "\n\n".join(
        " ".join(sentence() for _ in range(rng.randint(*sentences))) for _ in range(paragraphs)
    )


def transactions(count: int) -> list[str]:
    rng = random.Random(count)
    return [
        f"2024-{1 + i // 28:02d}-{1 + i % 28:02d} CARD PAYMENT {rng.choice(WORDS).upper()} STORE "
        f"{rng.randint(100, 999)} -{rng.randint(1, 999)}.{rng.randint(0, 99):02d} "
        f"{rng.randint(1, 9)},{rng.randint(100, 999)}.{rng.randint(0, 99):02d}"
        for i in range(count)
    ]


def statement(count: int = 60) -> str:
    return "\n".join(
        [
            "Monthly statement",
            "Account holder: A. Person  IBAN: DE89 3704 0044 0532 0130 00",
            "Opening balance 1,234.56",
            "Date Description Debit Credit Balance",
            *transactions(count),
            "Closing balance 987.65",
        ]
    )


def single(text: str) -> Extracted:
    return Extracted([Page(None, text)], None)


def assert_well_formed(extracted: Extracted, chunks: list[TextChunk]) -> None:
    text = extracted.text
    assert [c.index for c in chunks] == list(range(len(chunks)))
    for c in chunks:
        assert c.text
        assert text[c.start : c.end] == c.text
        assert c.text == c.text.strip()
    assert [c.start for c in chunks] == sorted(c.start for c in chunks)
    covered = set().union(*(range(c.start, c.end) for c in chunks)) if chunks else set()
    assert all(i in covered for i, ch in enumerate(text) if not ch.isspace())


# --- classify ---


def test_classify_bank_statement_as_financial() -> None:
    assert classify(single(statement())) == "financial"


@pytest.mark.parametrize(
    "line",
    [
        "05/01/2024 Transfer to savings -45.00",
        "5 Jan 2024 Direct debit gym €12,00",
        "Jan 5, 2024 Deposit salary 2,500.00",
        "05.01.2024 Lastschrift Strom -1.234,56",
    ],
)
def test_classify_recognises_date_and_amount_styles(line: str) -> None:
    body = "\n".join([line] * 6)
    assert classify(single(f"Account statement\nOpening balance\n{body}")) == "financial"


def test_banking_words_without_dated_amounts_are_not_financial() -> None:
    letter = (
        "Dear customer,\n\nYour account statement is ready. The balance, interest and every payment, "
        "deposit and withdrawal are listed online. Transfers made by debit or credit card appear too."
    )
    assert classify(single(letter)) == "generic"


def test_dated_amounts_without_banking_words_are_not_financial() -> None:
    shopping = "\n".join(f"2024-03-{d:02d} apples 3.50 pears 2.25" for d in range(1, 20))
    assert classify(single(shopping)) == "generic"


def test_a_few_dated_amounts_in_long_prose_are_not_financial() -> None:
    text = prose(1, 200) + "\n\nAccount statement balance interest.\n" + "\n".join(transactions(5))
    assert classify(single(text)) == "long_form"


def test_classify_long_prose_as_long_form() -> None:
    text = prose(2, 150)
    assert len(text) > 20_000
    assert classify(single(text)) == "long_form"


def test_classify_many_pages_as_long_form() -> None:
    pages = [Page(n, f"Short page {n}.") for n in range(1, 13)]
    assert classify(Extracted(pages, 12)) == "long_form"
    assert classify(Extracted(pages[:3], 3)) == "generic"


def test_long_table_of_figures_is_not_long_form() -> None:
    rows = "\n".join(f"{i};{i * 7 % 13};{i * 3.5:.1f};{i % 4}" for i in range(3000))
    assert len(rows) > 20_000
    assert classify(single(rows)) == "generic"


def test_classify_short_note_as_generic() -> None:
    assert classify(single("Buy milk.\n\nCall the plumber about the kitchen sink.")) == "generic"


# --- financial chunks ---


def test_financial_chunks_never_split_a_transaction_line() -> None:
    lines = transactions(80)
    extracted = single(statement(80))
    chunks = chunk(extracted, "financial")
    assert_well_formed(extracted, chunks)
    assert len(chunks) > 5
    assert all(len(c.text) <= 400 for c in chunks)
    for line in lines:
        assert sum(line in c.text.split("\n") for c in chunks) == 1, line


def test_financial_over_long_line_is_a_chunk_of_its_own() -> None:
    long_line = "2024-02-01 TRANSFER " + "REFERENCE " * 60 + "-99.00"
    text = "\n".join([*transactions(5), long_line, *transactions(6)])
    extracted = single(text)
    chunks = chunk(extracted, "financial")
    assert_well_formed(extracted, chunks)
    assert long_line in [c.text for c in chunks]
    assert all(len(c.text) <= 400 for c in chunks if c.text != long_line)


def test_financial_size_is_configurable() -> None:
    extracted = single(statement(40))
    small = chunk(extracted, "financial", ChunkSizes(financial=120))
    assert_well_formed(extracted, small)
    assert len(small) > len(chunk(extracted, "financial"))
    assert all(len(c.text) <= 120 for c in small)


# --- long-form chunks ---


def test_long_form_chunks_are_large_and_overlap() -> None:
    extracted = single(prose(3, 120))
    chunks = chunk(extracted, "long_form")
    assert_well_formed(extracted, chunks)
    assert len(chunks) > 10
    assert all(len(c.text) <= 1500 for c in chunks)
    assert all(len(c.text) >= 1000 for c in chunks[:-1])
    for previous, current in itertools.pairwise(chunks):
        assert previous.start < current.start < previous.end  # overlap
        assert previous.end - current.start <= 200
        assert current.end > previous.end
    # Cuts fall at sentence ends; overlaps begin at a sentence or at least a word.
    assert all(c.text.endswith(".") for c in chunks)
    assert all(extracted.text[c.start - 1].isspace() for c in chunks[1:])


def test_long_form_without_punctuation_still_overlaps_within_bounds() -> None:
    rng = random.Random(5)
    extracted = single(" ".join(rng.choice(WORDS) for _ in range(3000)))
    chunks = chunk(extracted, "long_form", ChunkSizes(long_form=500, long_form_overlap=80))
    assert_well_formed(extracted, chunks)
    assert all(len(c.text) <= 500 for c in chunks)
    for previous, current in itertools.pairwise(chunks):
        assert 0 < previous.end - current.start <= 80
        assert extracted.text[current.start - 1] == " "  # cut between words


def test_long_form_single_huge_word_is_cut_to_size() -> None:
    extracted = single("x" * 4000)
    chunks = chunk(extracted, "long_form")
    assert_well_formed(extracted, chunks)
    assert all(len(c.text) <= 1500 for c in chunks)


# --- generic chunks ---


def test_generic_groups_small_paragraphs_without_splitting_them() -> None:
    paragraphs = [f"Paragraph {i} says something short about the garden." for i in range(40)]
    extracted = single("\n\n".join(paragraphs))
    chunks = chunk(extracted, "generic")
    assert_well_formed(extracted, chunks)
    assert 1 < len(chunks) < len(paragraphs)
    assert all(len(c.text) <= 800 for c in chunks)
    for paragraph in paragraphs:
        assert sum(paragraph in c.text.split("\n\n") for c in chunks) == 1
    assert all(c.text.count("\n\n") >= 5 for c in chunks[:-1])


def test_generic_splits_an_over_long_paragraph_at_sentences() -> None:
    short = "A short opening paragraph."
    long_paragraph = prose(6, 1, sentences=(30, 30))
    assert len(long_paragraph) > 1600
    extracted = single(f"{short}\n\n{long_paragraph}\n\nA short closing paragraph.")
    chunks = chunk(extracted, "generic")
    assert_well_formed(extracted, chunks)
    assert len(chunks) >= 3
    assert all(len(c.text) <= 800 for c in chunks)
    assert all(c.text.endswith(".") for c in chunks)
    assert all(chunks[i].end <= chunks[i + 1].start for i in range(len(chunks) - 1))  # no overlap


def test_generic_short_text_is_one_chunk() -> None:
    extracted = single("Buy milk.\n\nCall the plumber.")
    assert chunk(extracted, "generic") == [TextChunk(0, "Buy milk.\n\nCall the plumber.", None, 0, 28)]


def test_empty_text_has_no_chunks() -> None:
    assert chunk(Extracted([], None), "generic") == []
    assert chunk(single("   \n\n  "), "long_form") == []


# --- pages, offsets, determinism ---


def test_chunks_know_their_pdf_page(tmp_path: Path) -> None:
    pdf = FPDF()
    pdf.set_font("helvetica", size=11)
    for n in range(1, 5):
        pdf.add_page()
        for p in range(3):
            pdf.multi_cell(0, 6, f"Page {n} paragraph {p}. " + prose(n * 10 + p, 1, (3, 3)))
            pdf.ln(6)
    path = tmp_path / "a.pdf"
    path.write_bytes(bytes(pdf.output()))
    extracted = extract(path, PDF)
    assert extracted.page_count == 4

    starts, offset = [], 0
    for page in extracted.pages:
        starts.append((offset, offset + len(page.text), page.number))
        offset += len(page.text) + 2
    for category in ("generic", "long_form", "financial"):
        chunks = chunk(extracted, category, ChunkSizes(financial=150, long_form=600, generic=300))
        assert_well_formed(extracted, chunks)
        assert {c.page for c in chunks} == {1, 2, 3, 4}
        for c in chunks:
            assert [n for s, e, n in starts if s <= c.start < e] == [c.page]
            assert [n for s, e, n in starts if s < c.end <= e] == [c.page]  # ends on it too


def test_a_chunk_never_crosses_a_page_break(tmp_path: Path) -> None:
    """A short two-page PDF fits in one chunk by size; it must still give one chunk per page,
    so text printed on page 2 is reported on page 2 (it used to be page 1)."""
    pdf = FPDF()
    pdf.set_font("helvetica", size=11)
    for text in ("Herons nest near the old mill.", "The invoice total is 412 euros."):
        pdf.add_page()
        pdf.multi_cell(0, 6, text)
    path = tmp_path / "two.pdf"
    path.write_bytes(bytes(pdf.output()))
    extracted = extract(path, PDF)
    for category in ("generic", "long_form", "financial"):
        chunks = chunk(extracted, category)
        assert [(c.page, c.text) for c in chunks] == [
            (1, "Herons nest near the old mill."),
            (2, "The invoice total is 412 euros."),
        ]
        for c in chunks:  # every character of a chunk stands on its page
            assert extracted.page_at(c.start) == extracted.page_at(c.end - 1) == c.page


def test_non_pdf_chunks_have_no_page() -> None:
    assert {c.page for c in chunk(single(prose(8, 30)), "generic")} == {None}


@pytest.mark.parametrize("category", ["financial", "long_form", "generic"])
def test_offsets_are_exact_on_messy_text(category: str) -> None:
    text = statement(30) + "\n\n\n" + prose(9, 20) + "\n" + "y" * 2000 + "\n\nEnd?! Yes… “Quoted.” (Aside.)"
    extracted = Extracted([Page(1, text[:3000].strip()), Page(2, text[3000:].strip())], 2)
    assert_well_formed(extracted, chunk(extracted, category))


@pytest.mark.parametrize("category", ["financial", "long_form", "generic"])
def test_chunking_is_deterministic(category: str) -> None:
    """The same text gives the same chunks in separate processes with different hash seeds
    (chunk ids are derived from chunk indexes, so re-ingestion must cut identically)."""
    script = (
        "import json, sys; sys.path.insert(0, '.');"
        "from tests.test_chunking import prose, statement, single;"
        "from shared.text.chunking import chunk, classify;"
        "text = prose(10, 60) + '\\n' + statement(20);"
        f"chunks = chunk(single(text), {category!r});"
        "print(json.dumps([classify(single(text)), [(c.start, c.end, c.page) for c in chunks]]))"
    )
    outputs = {
        subprocess.run(
            [sys.executable, "-c", script],
            cwd=ROOT,
            env={**os.environ, "PYTHONHASHSEED": seed},
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        ).stdout
        for seed in ("1", "2", "12345")
    }
    assert len(outputs) == 1
    category_seen, spans = json.loads(outputs.pop())
    text = prose(10, 60) + "\n" + statement(20)
    assert category_seen == classify(single(text))
    assert [tuple(span) for span in spans] == [
        (c.start, c.end, c.page) for c in chunk(single(text), category)
    ]


async def test_ingestion_splits_a_large_document_off_the_event_loop() -> None:
    """Under ``make run`` the documents worker shares its event loop with the API: while a
    large document is classified and chunked, other coroutines (requests) still run."""
    import asyncio

    from services.documents.ingestion import Ingestor
    from services.documents.settings import DocumentsSettings

    settings = DocumentsSettings.model_construct()
    ingestor = Ingestor(settings, sessions=None, store=None, embedder=None, extractor=None)  # type: ignore[arg-type]
    extracted = Extracted([Page(None, prose(11, 6000))], None)
    ticks = 0

    async def other_requests() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0)
            ticks += 1

    ticker = asyncio.create_task(other_requests())
    await asyncio.sleep(0)
    before = ticks
    category, chunks = await ingestor.split(extracted, None)
    during = ticks - before
    ticker.cancel()
    assert during > 1, "the event loop was blocked while the document was split"
    assert category == classify(extracted)
    assert chunks == chunk(extracted, category, settings.chunk_sizes)
