"""What the model is told: the numbered sources, the recent turns, the question."""

from collections.abc import Sequence
from dataclasses import dataclass

from services.assistant.llm import Message
from services.assistant.retrieval import estimate_tokens
from shared.passages import Passage

ANSWER_INSTRUCTIONS = (
    "You are a personal assistant. Answer the user's question using only the numbered sources "
    "below, which come from the user's own documents and emails. After each fact, cite the "
    "source it comes from with its number in square brackets, like [1]. If the sources do not "
    "contain the answer, say that you could not find it. Be brief and precise."
)
REWRITE_INSTRUCTIONS = (
    "Rewrite the user's last question so that it can be understood without the conversation "
    "before it. Keep names, dates and numbers. Reply with the rewritten question only."
)
NO_SOURCES_ANSWER = (
    "I could not find anything about this in your documents or mail, so I cannot answer it from them."
)


@dataclass(frozen=True)
class Turn:
    question: str
    answer: str


def source_heading(n: int, passage: Passage) -> str:
    if passage.kind == "document":
        where = f'document "{passage.title}"' + (f", page {passage.page}" if passage.page else "")
    else:
        sent = f", {passage.sent_at:%Y-%m-%d}" if passage.sent_at else ""
        where = f'email "{passage.subject or ""}" from {passage.sender or "unknown"}{sent}'
        if passage.kind == "attachment":
            where = f'attachment "{passage.title}" of {where}' + (
                f", page {passage.page}" if passage.page else ""
            )
    return f"[{n}] {where}"


def answer_messages(question: str, sources: Sequence[Passage], history: Sequence[Turn]) -> list[Message]:
    blocks = "\n\n".join(f"{source_heading(n, p)}\n{p.text}" for n, p in enumerate(sources, start=1))
    messages: list[Message] = [
        {"role": "system", "content": f"{ANSWER_INSTRUCTIONS}\n\nSources:\n\n{blocks}"}
    ]
    for turn in history:
        messages.append({"role": "user", "content": turn.question})
        messages.append({"role": "assistant", "content": turn.answer})
    messages.append({"role": "user", "content": question})
    return messages


def rewrite_messages(question: str, history: Sequence[Turn]) -> list[Message]:
    conversation = "\n".join(f"User: {t.question}\nAssistant: {t.answer[:500]}" for t in history)
    return [
        {"role": "system", "content": REWRITE_INSTRUCTIONS},
        {"role": "user", "content": f"{conversation}\nUser: {question}\n\nRewritten question:"},
    ]


def turn_tokens(turn: Turn) -> int:
    """What one earlier turn costs in the prompt (its two messages and their framing)."""
    return estimate_tokens(turn.question) + estimate_tokens(turn.answer) + 8


def fit_history(history: Sequence[Turn], budget_tokens: int) -> list[Turn]:
    """The most recent turns that fit ``budget_tokens``, oldest first."""
    kept: list[Turn] = []
    for turn in reversed(history):
        cost = turn_tokens(turn)
        if cost > budget_tokens:
            break
        kept.insert(0, turn)
        budget_tokens -= cost
    return kept


def prompt_tokens(question: str, history: Sequence[Turn]) -> int:
    """What the prompt costs before any source is added."""
    turns = sum(turn_tokens(t) for t in history)
    return estimate_tokens(ANSWER_INSTRUCTIONS) + estimate_tokens(question) + turns + 20
