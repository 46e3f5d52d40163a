"""The embeddings process's batcher, with a stand-in for the model's forward pass (the real
model behind it: ``tests/test_embeddings_server.py``)."""

import asyncio
import threading

from services.embeddings.service import Batcher


def stand_in_model(release: threading.Event, calls: list[list[str]]):
    def encode(texts: list[str], threads: int | None) -> list[list[float]]:
        calls.append(list(texts))
        release.wait(5)  # a pass takes as long as the test says
        return [[float(len(text))] for text in texts]

    return encode


async def test_an_identical_query_in_flight_is_answered_by_the_same_pass():
    release, calls = threading.Event(), []
    batcher = Batcher(stand_in_model(release, calls), max_batch=64, max_wait_seconds=0)
    batcher.start()
    try:
        first = asyncio.create_task(batcher.embed(["what is due?"]))
        await asyncio.sleep(0.05)  # its pass is running
        second = asyncio.create_task(batcher.embed(["what is due?"]))
        other = asyncio.create_task(batcher.embed(["something else"]))
        await asyncio.sleep(0.05)
        first.cancel()  # the first caller goes away: the second still gets the vectors
        release.set()
        assert await second == [[12.0]]
        assert await other == [[14.0]]
        assert calls == [["what is due?"], ["something else"]]  # two passes for three requests
        assert await batcher.embed(["what is due?"]) == [[12.0]]  # done: a new pass, not a stale one
        assert len(calls) == 3
    finally:
        await batcher.stop()


async def test_large_requests_are_never_shared():
    release, calls = threading.Event(), []
    release.set()
    batcher = Batcher(stand_in_model(release, calls), max_batch=8, max_wait_seconds=0)
    batcher.start()
    try:
        texts = [f"passage {i}" for i in range(6)]
        results = await asyncio.gather(batcher.embed(texts), batcher.embed(texts))
        assert results[0] == results[1] and sum(len(call) for call in calls) == 12
    finally:
        await batcher.stop()


async def test_on_idle_runs_once_after_passes_and_not_while_busy():
    """The process gives its passes' buffers back once it has been idle ``idle_seconds``: never
    before a first pass, never between passes of a busy spell, once per spell."""
    release, calls, idle = threading.Event(), [], []
    release.set()
    batcher = Batcher(
        stand_in_model(release, calls),
        max_batch=8,
        max_wait_seconds=0,
        on_idle=lambda: idle.append(len(calls)),
        idle_seconds=0.2,
    )
    batcher.start()
    try:
        await asyncio.sleep(0.4)
        assert idle == []  # nothing encoded yet: nothing to give back
        for i in range(5):  # a busy spell: requests closer together than idle_seconds
            await batcher.embed([f"text {i}"])
            await asyncio.sleep(0.05)
        assert idle == []
        await asyncio.sleep(0.4)
        assert idle == [5]  # once, after the spell's last pass
        await asyncio.sleep(0.4)
        assert idle == [5]  # and not again until there is work again
        await batcher.embed(["one more"])
        await asyncio.sleep(0.4)
        assert idle == [5, 6]
    finally:
        await batcher.stop()
