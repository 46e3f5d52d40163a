"""Citation markers, checked while the answer streams.

The model is asked to cite sources as ``[n]``. :class:`CitationStream` sits between the model
and the client: it passes text through as it arrives, but holds back what could still change
meaning, a partial marker (``[1`` before its ``]``) and a sentence's final punctuation, until it
is complete. Then:

- a marker naming a source that was handed to the model is kept (``[1, 3]`` is written
  ``[1][3]``); one naming no source is removed;
- at the end of each sentence without a marker, the source that supports it (see
  :mod:`services.assistant.grounding`) gets its marker, written before the punctuation;
  a claim no source supports is counted in ``unsupported``.

What the client receives is exactly what is stored: the stored answer is the concatenation
of the emitted pieces.
"""

import re
from collections.abc import Sequence

from services.assistant.grounding import SUPPORT_THRESHOLD, best_support, content_words

_MARKER = re.compile(r"\[\s*(\d{1,3}(?:\s*,\s*\d{1,3})*)\s*\]")
_PARTIAL_MARKER = re.compile(r"\[\s*(\d{1,3}(\s*,\s*\d{0,3})*)?\s*")
_TERMINAL = re.compile(r"[.!?]+[\"')]*")
_SPACE = re.compile(r"[ \t]+")
MAX_MARKER_CHARS = 24  # a "[" followed by more than this is text, not a marker


def _could_become_marker(raw: str, at: int) -> bool:
    """``raw[at:]`` is the start of a marker that has not arrived whole yet (``[1``, ``[1, ``)."""
    partial = _PARTIAL_MARKER.match(raw, at)
    return partial is not None and partial.end() == len(raw) and len(raw) - at < MAX_MARKER_CHARS


class CitationStream:
    def __init__(self, passages: Sequence[str]) -> None:
        self._passages = [content_words(text) for text in passages]
        self._raw = ""  # received, not yet emitted
        self._sentence = ""  # the current sentence as emitted so far
        self._sentence_cited = False
        self._out: list[str] = []
        self._space = ""  # trailing spaces, written only when more text follows
        self.cited: list[int] = []  # source numbers in order of first use
        self.cited_by: dict[int, list[str]] = {}  # source number -> sentences citing it
        self._citing: set[int] = set()
        self.unsupported = 0

    @property
    def text(self) -> str:
        """Everything emitted so far (the answer as stored)."""
        return "".join(self._out)

    def feed(self, delta: str) -> str:
        """Take the model's next piece; return what may be shown now (possibly empty)."""
        self._raw += delta
        start = len(self._out)
        self._drain(final=False)
        return "".join(self._out[start:])

    def finish(self) -> str:
        """The stream ended: release what was held back and close the last sentence."""
        start = len(self._out)
        self._drain(final=True)
        self._close_sentence(before="")
        return "".join(self._out[start:])

    # -- internals ------------------------------------------------------------------------------

    def _emit(self, text: str) -> None:
        """Write ``text``, keeping its trailing spaces back until more text follows (so a
        removed marker leaves no space before the punctuation)."""
        if not text:
            return
        text = self._space + text
        kept = text.rstrip(" ")
        self._space = text[len(kept) :]
        if kept:
            self._out.append(kept)
            self._sentence += kept

    def _cite(self, n: int) -> str:
        if n not in self.cited:
            self.cited.append(n)
        self._citing.add(n)
        self._sentence_cited = True
        return f"[{n}]"

    def _marker(self, numbers: str) -> str:
        valid = [int(x) for x in re.split(r"\s*,\s*", numbers.strip()) if x]
        valid = [n for n in dict.fromkeys(valid) if 1 <= n <= len(self._passages)]
        return "".join(self._cite(n) for n in valid)

    def _close_sentence(self, before: str) -> None:
        """End the current sentence; ``before`` is the held punctuation, written after the
        marker the server adds (``... capital [2].``)."""
        sentence = self._sentence
        if not self._sentence_cited:
            found = best_support(sentence, self._passages)
            if found is not None and found[1] >= SUPPORT_THRESHOLD:
                self._emit(" " + self._cite(found[0] + 1))
            elif found is not None:
                self.unsupported += 1
        for n in self._citing:
            self.cited_by.setdefault(n, []).append(sentence)
        self._emit(before)
        self._sentence, self._sentence_cited, self._citing = "", False, set()

    def _drain(self, *, final: bool) -> None:
        while self._raw:
            raw = self._raw
            special = next((i for i, c in enumerate(raw) if c in "[.!?\n"), None)
            if special is None:
                self._emit(raw)
                self._raw = ""
                return
            if special > 0:
                self._emit(raw[:special])
                self._raw = raw[special:]
                continue
            if raw[0] == "[":
                if not self._take_marker(final):
                    return
            elif raw[0] == "\n":
                newlines = len(raw) - len(raw.lstrip("\n"))
                self._close_sentence(before="")
                self._emit(raw[:newlines])
                self._raw = raw[newlines:]
            elif not self._take_terminal(final):
                return

    def _take_marker(self, final: bool) -> bool:
        """At a ``[``: consume a marker, or wait for more; False means wait."""
        raw = self._raw
        match = _MARKER.match(raw)
        if match:
            rendered = self._marker(match.group(1))
            if rendered:
                self._emit(rendered)
            else:  # "the capital [9]." -> "the capital."
                self._space = ""
            self._raw = raw[match.end() :]
            return True
        if not final and _could_become_marker(raw, 0):
            return False
        self._emit("[")
        self._raw = raw[1:]
        return True

    def _take_terminal(self, final: bool) -> bool:
        """At sentence punctuation: decide whether the sentence ends here; False means wait."""
        raw = self._raw
        terminal = _TERMINAL.match(raw)
        assert terminal is not None
        end = terminal.end()
        if end == len(raw):
            if final:
                self._close_sentence(before=raw)
                self._raw = ""
                return True
            return False
        if not raw[end].isspace():  # "3.14", "e.g.x": not an end
            self._emit(raw[:end])
            self._raw = raw[end:]
            return True
        space = _SPACE.match(raw, end)
        after = space.end() if space else end
        if after == len(raw) and not final:
            return False  # what follows the space decides whom a marker belongs to
        if raw.startswith("[", after):
            match = _MARKER.match(raw, after)
            if match:  # "capital. [1]": the marker belongs to this sentence
                self._emit(raw[:after])
                self._emit(self._marker(match.group(1)))
                self._close_sentence(before="")
                self._raw = raw[match.end() :]
                return True
            if not final and _could_become_marker(raw, after):
                return False
        self._close_sentence(before=raw[:end])
        self._raw = raw[end:]
        return True
