"""Reading hostile files: structural limits refuse the known shapes before parsing, and the
capped child process catches whatever else runs away, without hurting the caller."""

import asyncio
import multiprocessing
import os
import signal
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from shared.text.extraction import DOCX, PDF, TEXT, ExtractionError, ExtractionLimits, extract
from shared.text.isolation import ExtractionSettings, IsolatedExtractor, IsolationLimits
from tests import files
from tests.support import ROOT


def write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def test_a_docx_zip_bomb_is_refused_from_its_zip_directory(tmp_path: Path) -> None:
    bomb = files.docx_bomb()  # 0.3 MB that would inflate to 200 MB of XML
    path = write(tmp_path, "bomb.docx", bomb)
    with pytest.raises(ExtractionError, match="zip bomb"):
        extract(path, DOCX)
    with pytest.raises(ExtractionError, match="at most 10 MB"):
        extract(path, DOCX, ExtractionLimits(max_uncompressed_bytes=10 * 2**20, max_compression_ratio=1e9))
    ordinary = write(tmp_path, "ok.docx", files.docx_file())
    assert files.KNOWN_SENTENCE in extract(ordinary, DOCX).text  # real documents still pass


def test_a_pdf_listing_one_page_thousands_of_times_is_refused_by_its_page_count(tmp_path: Path) -> None:
    path = write(tmp_path, "pages.pdf", files.pdf_repeating_one_page(3000))
    with pytest.raises(ExtractionError, match="3,000 pages; at most 2,000"):
        extract(path, PDF)
    few = write(tmp_path, "few.pdf", files.pdf_repeating_one_page(3))
    assert extract(few, PDF).page_count == 3


def test_text_beyond_the_character_limit_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, "long.txt", b"word " * 10_000)
    with pytest.raises(ExtractionError, match="more than 1,000 characters"):
        extract(path, TEXT, ExtractionLimits(max_chars=1_000))
    pdf = write(tmp_path, "three.pdf", files.three_page_pdf())
    with pytest.raises(ExtractionError, match="characters"):
        extract(pdf, PDF, ExtractionLimits(max_chars=500))


async def test_a_runaway_extraction_fails_alone_and_the_next_file_is_read(tmp_path: Path) -> None:
    small = write(tmp_path, "small.txt", b"The herons are back.")
    big = tmp_path / "big.txt"  # 150 MB of text: decoding and normalising copies it several times
    with big.open("wb") as out:
        for _ in range(150):
            out.write((b"word " * 20 + b"\n") * 10_000)

    capped_memory = IsolatedExtractor(isolation=IsolationLimits(memory_bytes=400 * 2**20, cpu_seconds=60))
    capped_cpu = IsolatedExtractor(isolation=IsolationLimits(memory_bytes=4 * 2**30, cpu_seconds=1))
    try:
        assert (await capped_memory.extract(small, TEXT)).text == "The herons are back."
        with pytest.raises(ExtractionError, match="memory"):
            await capped_memory.extract(big, TEXT)
        assert (await capped_memory.extract(small, TEXT)).text == "The herons are back."

        with pytest.raises(ExtractionError, match="1 s of CPU"):  # the kernel ends the child
            await capped_cpu.extract(big, TEXT)
        # Concurrent callers share the one child one at a time, and a fresh child serves them.
        texts = await asyncio.gather(*(capped_cpu.extract(small, TEXT) for _ in range(3)))
        assert [t.text for t in texts] == ["The herons are back."] * 3
    finally:
        capped_memory.close()
        capped_cpu.close()


def test_limits_come_from_settings() -> None:
    settings = ExtractionSettings(
        extract_max_pages=7, extract_cpu_seconds=9, extract_memory_bytes=2**30, extract_idle_seconds=0
    )
    assert settings.extraction_limits.max_pages == 7
    assert settings.isolation_limits == IsolationLimits(memory_bytes=2**30, cpu_seconds=9, idle_seconds=0)
    assert ExtractionSettings().isolation_limits.idle_seconds == 5.0


def children() -> set[int]:
    return {child.pid for child in multiprocessing.active_children()}


async def test_the_child_serves_files_in_a_row_and_exits_when_idle(tmp_path: Path) -> None:
    """One child while files keep coming; gone after ``idle_seconds`` without one (it holds the
    parsers' memory); a new child reads the next file."""
    small = write(tmp_path, "small.txt", b"The herons are back.")
    before = children()
    extractor = IsolatedExtractor(isolation=IsolationLimits(idle_seconds=0.6))
    try:
        started: set[int] = set()
        for _ in range(4):  # closer together than the idle time
            assert (await extractor.extract(small, TEXT)).text == "The herons are back."
            started |= children() - before
            await asyncio.sleep(0.2)
        assert len(started) == 1
        (first,) = started
        assert psutil.pid_exists(first)
        for _ in range(100):  # the event loop must run for the idle timer to fire
            if first not in children():
                break
            await asyncio.sleep(0.1)
        assert first not in children() and not psutil.pid_exists(first)
        assert (await extractor.extract(small, TEXT)).text == "The herons are back."
        assert len(children() - before - {first}) == 1  # a new child
    finally:
        extractor.close()
    never_idle = IsolatedExtractor(isolation=IsolationLimits(idle_seconds=0))
    try:
        await never_idle.extract(small, TEXT)
        (child,) = children() - before
        await asyncio.sleep(1.0)
        assert psutil.pid_exists(child) and psutil.Process(child).status() != psutil.STATUS_ZOMBIE
    finally:
        never_idle.close()


def test_the_extraction_child_dies_with_a_killed_worker(tmp_path: Path) -> None:
    """kill -9 of the worker must not leave its extraction child behind as an orphan."""
    small = write(tmp_path, "small.txt", b"hello")
    script = (
        "import asyncio, multiprocessing, sys, time\n"
        "from pathlib import Path\n"
        "from shared.text.isolation import IsolatedExtractor\n"
        "async def main():\n"
        "    extractor = IsolatedExtractor()\n"
        f"    await extractor.extract(Path({str(small)!r}), 'text/plain')\n"
        "    print(*[c.pid for c in multiprocessing.active_children()], flush=True)\n"
        "    time.sleep(60)\n"
        "if __name__ == '__main__':\n"
        "    asyncio.run(main())\n"
    )
    worker = subprocess.Popen(
        [sys.executable, "-c", script], cwd=ROOT, stdout=subprocess.PIPE, text=True, env={**os.environ}
    )
    try:
        children = [int(pid) for pid in worker.stdout.readline().split()]  # type: ignore[union-attr]
        assert children and all(psutil.pid_exists(pid) for pid in children)
        worker.send_signal(signal.SIGKILL)
        worker.wait(timeout=10)
        gone, alive = psutil.wait_procs([psutil.Process(pid) for pid in children], timeout=10)
        assert alive == [] and len(gone) == len(children)
    finally:
        worker.kill()
