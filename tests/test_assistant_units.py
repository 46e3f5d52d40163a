"""The assistant's pure parts: citation checking while streaming, grounding, quotes, dates,
follow-up heuristics, fusion and packing."""

import asyncio
import uuid
from datetime import UTC, datetime

import pytest

from services.assistant.answering import extractive_answer, heuristic_standalone
from services.assistant.citations import CitationStream
from services.assistant.dates import extract_dates
from services.assistant.grounding import quote
from services.assistant.prompts import Turn
from services.assistant.retrieval import fuse, pack
from shared.passages import Passage

SOURCES = [
    "Paris is the capital of France and its largest city.",
    "The Eiffel Tower was built in 1889 for the World Fair in Paris.",
]


def run(pieces: list[str], sources: list[str] = SOURCES) -> tuple[str, CitationStream]:
    stream = CitationStream(sources)
    shown = "".join(stream.feed(piece) for piece in pieces) + stream.finish()
    assert shown == stream.text  # what streams is what is stored
    return shown, stream


@pytest.mark.parametrize("split", ["whole", "characters"])
def test_markers_are_checked_and_added_whatever_the_chunking(split):
    text = (
        "Paris is the capital of France [1]. The tower was built in 1889 for the World Fair. "
        "Bananas grow on tall green plants everywhere [7]."
    )
    shown, stream = run([text] if split == "whole" else list(text))
    assert shown == (
        "Paris is the capital of France [1]. The tower was built in 1889 for the World Fair [2]. "
        "Bananas grow on tall green plants everywhere."
    )
    assert stream.cited == [1, 2]
    assert stream.unsupported == 1


def test_a_partial_marker_is_held_back_until_complete():
    stream = CitationStream(SOURCES)
    assert stream.feed("Paris is the capital of France [") == "Paris is the capital of France"
    assert stream.feed("1") == ""
    assert stream.feed("]") == " [1]"
    assert stream.feed(". Next") == ". Next"


def test_marker_after_the_period_belongs_to_its_sentence():
    shown, stream = run(["The Eiffel Tower was built in 1889", ". [2] It is tall", "."])
    assert shown == "The Eiffel Tower was built in 1889. [2] It is tall."
    assert stream.cited == [2] and stream.unsupported == 0


def test_lists_numbers_and_grouped_markers():
    shown, stream = run(["Pi is 3.14 and [1, 2, 9] more\n- Paris is the capital city of France"])
    assert shown == "Pi is 3.14 and [1][2] more\n- Paris is the capital city of France [1]"
    assert stream.cited == [1, 2]


def test_unknown_marker_leaves_no_stray_space():
    shown, _ = run(["Paris is lovely [3]."])
    assert shown == "Paris is lovely."


def test_quote_is_an_exact_substring_of_the_passage():
    passage = "Intro line. The invoice total was 4200 euros, due in 30 days. Thanks!"
    found = quote(passage, ["The total of the invoice is 4200 euros"])
    assert found == "The invoice total was 4200 euros, due in 30 days."
    assert found in passage
    long = "word " * 200
    assert len(quote(long, ["word"])) <= 400 and quote(long, ["word"]) in long


NOW = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("question", "resolved", "search"),
    [
        (
            "What did Alice send me last week?",
            "What did Alice send me between 2026-11-23 and 2026-11-29?",
            "What did Alice send me?",
        ),
        ("invoices in June", "invoices between 2026-06-01 and 2026-06-30", "invoices"),
        ("emails since 2024", "emails since 2024-01-01", "emails"),
        ("what happened before March 2025?", "what happened before 2025-03-01?", "what happened?"),
        ("notes from yesterday", "notes since 2026-11-30", "notes"),
        ("meeting on 3 March 2025", "meeting on 2025-03-03", "meeting"),
        ("you may go", "you may go", "you may go"),
        ("invoice 2024 total", "invoice 2024 total", "invoice 2024 total"),
    ],
)
def test_date_expressions_become_ranges(question, resolved, search):
    dated = extract_dates(question, NOW)
    assert (dated.text, dated.search_text) == (resolved, search)


def test_date_range_bounds():
    week = extract_dates("last week", NOW).range
    assert week is not None
    assert (week.after, week.before) == (
        datetime(2026, 11, 23, tzinfo=UTC),
        datetime(2026, 11, 30, tzinfo=UTC),
    )
    assert extract_dates("What is the capital of France?", NOW).range is None


def test_heuristic_follow_up_borrows_the_previous_subject():
    history = [Turn("Who repaired the harbour crane?", "Nordic Lifts [1].")]
    assert (
        heuristic_standalone("How much did it cost?", history)
        == "How much did it cost? (repaired harbour crane)"
    )
    assert heuristic_standalone("Which invoices arrived from Nordic Lifts this spring?", history).endswith(
        "spring?"
    )
    assert heuristic_standalone("How much?", []) == "How much?"


def passage(text: str, **extra) -> Passage:
    return Passage(
        kind="document",
        chunk_id=uuid.uuid4(),
        document_id=uuid.uuid4(),
        title="t",
        text=text,
        score=0.0,
        **extra,
    )


def test_fusion_ranks_by_both_lists_and_drops_near_duplicates():
    a, b, c = (
        passage("alpha beta gamma delta"),
        passage("epsilon zeta eta theta"),
        passage("iota kappa lambda mu"),
    )
    copy = passage("alpha beta gamma delta")  # the same paragraph in another upload
    fused = fuse([[a, b, c], [b, copy]])
    assert [p.chunk_id for p in fused] == [b.chunk_id, a.chunk_id, c.chunk_id]


def test_packing_respects_the_token_budget():
    small, big = passage("x " * 30), passage("y " * 3000)
    assert pack([big, small], budget_tokens=200, limit=8) == [small]
    assert pack(
        [small, small.model_copy(update={"chunk_id": uuid.uuid4()})], budget_tokens=10_000, limit=1
    ) == [small]


def test_extractive_answer_cites_each_sentence():
    answer = extractive_answer("When was the Eiffel Tower built?", [passage(SOURCES[1]), passage(SOURCES[0])])
    assert answer.startswith("The Eiffel Tower was built in 1889 for the World Fair in Paris [1].")
    _, stream = run([answer], [SOURCES[1], SOURCES[0]])
    assert stream.cited[0] == 1


def test_a_rewrite_that_leaves_the_conversation_is_not_used():
    from services.assistant.answering import _sane_rewrite

    history = [Turn("Who repaired the harbour crane?", "Nordic Lifts [1].")]
    assert _sane_rewrite("How much did the harbour crane repair cost?", "How much did it cost?", history)
    assert not _sane_rewrite("Bananas are yellow.", "How much did it cost?", history)
    assert not _sane_rewrite("", "How much did it cost?", history)


async def test_answer_slots_are_shared_limited_and_expire(redis_url):
    from redis.asyncio import Redis

    from services.assistant.limits import AnswerSlots
    from shared.errors import RateLimited

    redis = Redis.from_url(redis_url)
    try:
        user = uuid.uuid4()
        first, second = AnswerSlots(redis, 2, hold_seconds=1), AnswerSlots(redis, 2, hold_seconds=1)
        await first.take(user, "a")
        await second.take(user, "b")  # another process, the same user's slots
        with pytest.raises(RateLimited) as refused:
            await first.take(user, "c")
        assert refused.value.headers["Retry-After"] == "5"
        await first.take(uuid.uuid4(), "a")  # other users are not affected
        await second.give_back(user, "b")
        await first.take(user, "c")
        await asyncio.sleep(1.1)  # the holders died: their slots expire
        await first.take(user, "d")
        await first.take(user, "e")
    finally:
        await redis.aclose()
