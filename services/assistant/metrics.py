"""Prometheus metrics of answering (no user ids in labels)."""

from prometheus_client import Counter, Histogram

_SECONDS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)

RETRIEVAL = Histogram("pai_answer_retrieval_seconds", "Time to gather and rank the sources", buckets=_SECONDS)
FIRST_TOKEN = Histogram(
    "pai_answer_first_token_seconds",
    "From the question to the answer's first text",
    ["backend"],
    buckets=_SECONDS,
)
TOTAL = Histogram(
    "pai_answer_seconds", "From the question to the stored answer", ["backend"], buckets=_SECONDS
)
ANSWERS = Counter("pai_answers_total", "Answers by final status and backend", ["status", "backend"])
