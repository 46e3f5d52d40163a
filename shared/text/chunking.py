"""Classification and chunking of extracted text. The category picks the chunk shape that
retrieves best: a bank statement answers "what did I pay on the 5th" from a few whole
transaction lines, a book needs large overlapping passages, anything else medium paragraphs.

Every chunk is an exact slice of ``Extracted.text`` (``text[start:end] == chunk.text``), so a
hit can be located, highlighted and mapped back to its page."""

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Literal

from shared.text.extraction import Extracted

Category = Literal["financial", "long_form", "generic"]
Span = tuple[int, int]

# --- classification thresholds (the legacy app's rule: banking words AND many dated amounts) ---
# Financial: at least this many distinct banking terms, so one "payment" in a letter is not enough,
FINANCIAL_MIN_TERMS = 3
# and at least this many lines holding both a date and an amount,
FINANCIAL_MIN_DATED_AMOUNT_LINES = 5
# which make at least this share of the non-empty lines (an annual report's odd table is not a statement).
FINANCIAL_MIN_DATED_AMOUNT_SHARE = 0.10
# Long form: this many pages, or more than this many characters of prose:
LONG_FORM_MIN_PAGES = 10
LONG_FORM_MIN_CHARS = 20_000
# prose = mostly letters (not tables of figures) with sentence ends at least every ~400 characters.
LONG_FORM_MIN_LETTER_SHARE = 0.70
LONG_FORM_MAX_CHARS_PER_SENTENCE = 400

_TERMS = re.compile(
    r"\b(balance|statement|account|debit|credit|transaction|deposit|withdrawal|iban|bic|swift"
    r"|interest|payment|transfer|overdraft|fee|sort code|standing order|direct debit"
    r"|saldo|kontoauszug|buchung|lastschrift|gutschrift|überweisung|solde|relevé|virement)(?:s|es)?\b",
    re.IGNORECASE,
)
_MONTH = r"(?:jan|feb|mar|apr|may|jun|jul|aug|sep|sept|oct|nov|dec)[a-z]*\.?"
_DATE = re.compile(
    r"\b(?:\d{4}-\d{2}-\d{2}"  # 2024-01-05
    r"|\d{1,2}[./-]\d{1,2}[./-](?:\d{4}|\d{2})"  # 05/01/2024, 5.1.24
    rf"|\d{{1,2}}\.?\s+{_MONTH},?\s+\d{{2,4}}"  # 5 Jan 2024
    rf"|{_MONTH}\s+\d{{1,2}},?\s+\d{{4}})\b",  # Jan 5, 2024
    re.IGNORECASE,
)
# 1,234.56  -45.00  €12,00  1 234,56: digit groups, then exactly two decimals.
_AMOUNT = re.compile(
    r"(?<![\w.,])[-+\u2212]?[€$£]?\s?[-+\u2212]?\d{1,3}(?:[,.' \u00a0]?\d{3})*[.,]\d{2}(?![\d]|[.,]\d)"
)
_SENTENCE_END = re.compile(r"[.!?…]+[\"'\u201d\u2019)\]]*(?=\s|$)")
_PARAGRAPH_BREAK = re.compile(r"\n\s*\n")
_NEWLINE = re.compile(r"\n")
_WHITESPACE = re.compile(r"\s+")


@dataclass(frozen=True)
class ChunkSizes:
    """Target chunk lengths in characters per category (and the long-form overlap)."""

    financial: int = 400
    long_form: int = 1500
    long_form_overlap: int = 200
    generic: int = 800


@dataclass(frozen=True)
class TextChunk:
    """``text == extracted.text[start:end]``; ``page`` is the page it stands on (PDFs only)."""

    index: int
    text: str
    page: int | None
    start: int
    end: int


def classify(extracted: Extracted) -> Category:
    text = extracted.text
    if _is_financial(text):
        return "financial"
    if (extracted.page_count or 0) >= LONG_FORM_MIN_PAGES or _is_long_prose(text):
        return "long_form"
    return "generic"


def _is_financial(text: str) -> bool:
    terms = {" ".join(m.lower().split()) for m in _TERMS.findall(text)}
    if len(terms) < FINANCIAL_MIN_TERMS:
        return False
    lines = [line for line in text.split("\n") if line.strip()]
    dated = sum(1 for line in lines if _is_dated_amount(line))
    share = dated / len(lines)
    return dated >= FINANCIAL_MIN_DATED_AMOUNT_LINES and share >= FINANCIAL_MIN_DATED_AMOUNT_SHARE


def _is_dated_amount(line: str) -> bool:
    """A date and, once the date is removed (05.01.2024 would pass for 05.01), an amount."""
    if not _DATE.search(line):
        return False
    return _AMOUNT.search(_DATE.sub(" ", line)) is not None


def _is_long_prose(text: str) -> bool:
    if len(text) <= LONG_FORM_MIN_CHARS:
        return False
    visible = sum(1 for c in text if not c.isspace())
    letters = sum(1 for c in text if c.isalpha())
    sentences = len(_SENTENCE_END.findall(text))
    return (
        letters >= LONG_FORM_MIN_LETTER_SHARE * visible
        and sentences * LONG_FORM_MAX_CHARS_PER_SENTENCE >= len(text)
    )


def chunk(extracted: Extracted, category: Category, sizes: ChunkSizes = ChunkSizes()) -> list[TextChunk]:
    """Split ``extracted.text`` into chunks shaped by ``category``; deterministic. A chunk never
    crosses a page break, so the page a chunk reports is the page its every word stands on."""
    text = extracted.text
    spans = [span for page in extracted.page_spans() for span in _chunk_span(text, page, category, sizes)]
    return [
        TextChunk(index, text[start:end], extracted.page_at(start), start, end)
        for index, (start, end) in enumerate(spans)
    ]


def _chunk_span(text: str, span: Span, category: Category, sizes: ChunkSizes) -> list[Span]:
    whole = _strip(text, *span)
    if whole is None:
        return []
    if category == "financial":
        # Whole lines only: a transaction split over two chunks would answer nothing.
        return _pack(text, list(_split_lines(text, whole)), sizes.financial)
    splitters = [_split_paragraphs, _split_sentences, _split_lines, _split_words]
    if category == "long_form":
        atoms = _atoms(text, whole, sizes.long_form, splitters, always=2)
        return _pack(text, atoms, sizes.long_form, sizes.long_form_overlap)
    return _pack(text, _atoms(text, whole, sizes.generic, splitters, always=0), sizes.generic)


Splitter = Callable[[str, Span], Iterator[Span]]


def _atoms(text: str, span: Span, size: int, splitters: list[Splitter], always: int) -> list[Span]:
    """Cut ``span`` into pieces of at most ``size``, using the coarsest splitter that gets
    there (paragraphs, then sentences, lines, words, and as a last resort fixed-size cuts). The
    first ``always`` splitters apply even to short spans, to give the packer finer boundaries."""
    if always <= 0 and span[1] - span[0] <= size:
        return [span]
    if not splitters:
        return [
            piece
            for cut in range(span[0], span[1], size)
            if (piece := _strip(text, cut, min(cut + size, span[1])))
        ]
    pieces: list[Span] = []
    for part in splitters[0](text, span):
        pieces.extend(_atoms(text, part, size, splitters[1:], always - 1))
    return pieces


def _pack(text: str, atoms: list[Span], size: int, overlap: int = 0) -> list[Span]:
    """Greedy: each chunk takes the following atoms while it stays within ``size`` (an atom
    longer than ``size`` is a chunk alone). With ``overlap``, the next chunk starts that far
    back, at a sentence start within the previous chunk if one fits, else at a word."""
    spans: list[Span] = []
    first, start = 0, atoms[0][0] if atoms else 0
    while first < len(atoms):
        last = first
        while last + 1 < len(atoms) and atoms[last + 1][1] - start <= size:
            last += 1
        end = atoms[last][1]
        spans.append((start, end))
        previous, first = first, last + 1
        if first < len(atoms):
            start = atoms[first][0]
            if overlap:
                start = _overlap_start(text, atoms, previous, first, spans[-1], size, overlap)
    return spans


def _overlap_start(
    text: str, atoms: list[Span], previous: int, first: int, chunk: Span, size: int, overlap: int
) -> int:
    """Where the chunk beginning with atom ``first`` starts when it repeats the end of ``chunk``
    (made of atoms ``previous``..``first - 1``): at most ``overlap`` back, and never so far
    that atom ``first`` would no longer fit, nor at or before the previous chunk's start."""
    lowest = max(chunk[1] - overlap, atoms[first][1] - size, chunk[0] + 1)
    for start, _ in atoms[previous + 1 : first]:
        if start >= lowest:
            return start
    for position in range(lowest, chunk[1]):
        if text[position - 1].isspace() and not text[position].isspace():
            return position
    return atoms[first][0]


def _strip(text: str, start: int, end: int) -> Span | None:
    """``(start, end)`` narrowed to exclude surrounding whitespace; None if nothing is left."""
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return (start, end) if start < end else None


def _split_at(text: str, span: Span, cuts: Iterator[int]) -> Iterator[Span]:
    start = span[0]
    for cut in [*cuts, span[1]]:
        if (piece := _strip(text, start, cut)) is not None:
            yield piece
        start = cut


def _split_paragraphs(text: str, span: Span) -> Iterator[Span]:
    matches = _PARAGRAPH_BREAK.finditer(text, span[0], span[1])
    return _split_at(text, span, (m.end() for m in matches))


def _split_sentences(text: str, span: Span) -> Iterator[Span]:
    """After . ! ? … (and closing quotes), unless the next word starts in lower case
    ("e.g. this"); an abbreviation cut too many only means a finer packing boundary."""
    matches = _SENTENCE_END.finditer(text, span[0], span[1])
    cuts = (m.end() for m in matches if not _next_word_is_lower(text, m.end(), span[1]))
    return _split_at(text, span, cuts)


def _next_word_is_lower(text: str, position: int, end: int) -> bool:
    while position < end and text[position].isspace():
        position += 1
    return position < end and text[position].islower()


def _split_lines(text: str, span: Span) -> Iterator[Span]:
    return _split_at(text, span, (m.end() for m in _NEWLINE.finditer(text, span[0], span[1])))


def _split_words(text: str, span: Span) -> Iterator[Span]:
    return _split_at(text, span, (m.start() for m in _WHITESPACE.finditer(text, span[0], span[1])))


def snippet(text: str, limit: int = 300) -> str:
    """``text`` on one line, cut at a word boundary to at most ``limit`` characters."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1].rsplit(" ", 1)[0] + "…"
