"""Does a source support a sentence? Lexical grounding, and the quotes that show it.

A sentence is supported by a passage when most of its content words (lower-cased, stop words
dropped, a plural ``s`` folded) stand in the passage. That is deliberately plain: it is
deterministic, costs microseconds per sentence while the answer streams, and small local
models mostly copy the words of their sources rather than paraphrase them. The threshold is
``SUPPORT_THRESHOLD``; sentences with fewer than ``MIN_CONTENT_WORDS`` content words ("Yes.",
"Here is what I found:") are neither supported nor unsupported.
"""

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

SUPPORT_THRESHOLD = 0.5
MIN_CONTENT_WORDS = 3
MAX_QUOTE_CHARS = 400

_WORD = re.compile(r"[^\W_]+")
# Sentence ends: terminal punctuation followed by white space, or a line break.
_SENTENCE_END = re.compile(r"(?<=[.!?])[\"')\]]*\s+|\n+")

_STOP_WORDS = """
a about above after again against all am an and any are as at be because been before being
below between both but by can could did do does doing down during each few for from further
had has have having he her here hers herself him himself his how i if in into is it its
itself just me more most my myself no nor not now of off on once only or other our ours
ourselves out over own same she should so some such than that the their theirs them
themselves then there these they this those through to too under until up very was we were
what when where which while who whom why will with would you your yours yourself yourselves
also according source sources found find information document documents email emails mail
"""
STOP_WORDS = frozenset(_STOP_WORDS.split())


def content_words(text: str) -> set[str]:
    """The words that carry meaning, normalised for comparison."""
    words = set()
    for raw in _WORD.findall(text.lower()):
        if raw in STOP_WORDS or (len(raw) < 2 and not raw.isdigit()):
            continue
        words.add(raw[:-1] if len(raw) > 3 and raw.endswith("s") and not raw.endswith("ss") else raw)
    return words


def support(claim: set[str], passage: set[str]) -> float:
    """The share of the claim's content words that the passage contains."""
    return len(claim & passage) / len(claim) if claim else 0.0


def best_support(sentence: str, passages: Sequence[set[str]]) -> tuple[int, float] | None:
    """(index, share) of the passage that best supports ``sentence``, if it is a claim at all."""
    claim = content_words(sentence)
    if len(claim) < MIN_CONTENT_WORDS or not passages:
        return None
    scores = [support(claim, words) for words in passages]
    best = max(range(len(scores)), key=scores.__getitem__)
    return best, scores[best]


@dataclass(frozen=True)
class Span:
    start: int
    end: int


def sentence_spans(text: str) -> list[Span]:
    """Spans of the sentences of ``text`` (white space at their edges excluded)."""
    spans, start = [], 0
    for match in _SENTENCE_END.finditer(text):
        spans.append(Span(start, match.start()))
        start = match.end()
    spans.append(Span(start, len(text)))
    result = []
    for span in spans:
        piece = text[span.start : span.end]
        stripped = piece.strip()
        if stripped:
            offset = span.start + piece.index(stripped)
            result.append(Span(offset, offset + len(stripped)))
    return result


def quote(passage: str, claims: Iterable[str]) -> str:
    """The passage's sentence that shares the most content words with ``claims``, as an exact
    substring of the passage (cut at a word boundary when very long)."""
    wanted = set().union(*(content_words(claim) for claim in claims))
    spans = sentence_spans(passage) or [Span(0, len(passage))]
    best = max(spans, key=lambda s: (len(wanted & content_words(passage[s.start : s.end])), -s.start))
    text = passage[best.start : best.end]
    if len(text) > MAX_QUOTE_CHARS:
        cut = text.rfind(" ", 0, MAX_QUOTE_CHARS)
        text = text[: cut if cut > MAX_QUOTE_CHARS // 2 else MAX_QUOTE_CHARS]
    return text


def extractive_sentences(passage: str, question: str, limit: int = 2) -> list[str]:
    """The passage's sentences that best match the question, in their original order."""
    wanted = content_words(question)
    spans = sentence_spans(passage)
    ranked = sorted(spans, key=lambda s: -len(wanted & content_words(passage[s.start : s.end])))[:limit]
    chosen = [s for s in spans if s in ranked and wanted & content_words(passage[s.start : s.end])]
    return [passage[s.start : s.end] for s in chosen or ranked[:1]]
