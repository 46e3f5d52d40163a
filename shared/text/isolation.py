"""Extraction of untrusted files where a runaway cannot take the worker down.

Parsers of PDF, DOCX and HTML can be driven by a small hostile file to use gigabytes of memory
or minutes of CPU (a zip bomb, a PDF listing one page thousands of times). The structural
limits in :class:`~shared.text.extraction.ExtractionLimits` catch the known shapes before
parsing; this module catches the rest: every extraction runs in a child process whose address
space and CPU time are capped by the kernel (``setrlimit``). A child that runs out dies or
raises, the file fails with a plain reason, and the next file gets a fresh child. The worker
itself never holds the parsed document.
"""

import asyncio
import contextlib
import ctypes
import multiprocessing
import os
import resource
import signal
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.text.extraction import Extracted, ExtractionError, ExtractionLimits, extract


@dataclass(frozen=True)
class IsolationLimits:
    """What the child process may use: address space (bytes) and CPU seconds per file; and how
    long it may sit idle before it exits (0: it stays until the service stops)."""

    memory_bytes: int = 2 * 2**30
    cpu_seconds: int = 120
    idle_seconds: float = 5.0


class ExtractionSettings(BaseSettings):
    """Settings of a service that reads untrusted files (documents, mail attachments)."""

    model_config = SettingsConfigDict(env_prefix="PAI_", extra="ignore", populate_by_name=True)

    extract_max_pages: int = Field(2000, ge=1)
    extract_max_chars: int = Field(20_000_000, ge=1)
    extract_max_uncompressed_bytes: int = Field(256 * 2**20, ge=1)
    extract_max_compression_ratio: float = Field(100.0, gt=1)
    extract_memory_bytes: int = Field(2 * 2**30, ge=64 * 2**20)
    extract_cpu_seconds: int = Field(120, ge=1)
    # The child stays while files keep coming and exits after this long without one: it holds
    # ~40-60 MiB of parsers and the last document's leftovers (the next file pays a ~1 s start).
    extract_idle_seconds: float = Field(5.0, ge=0)

    @property
    def extraction_limits(self) -> ExtractionLimits:
        return ExtractionLimits(
            max_pages=self.extract_max_pages,
            max_chars=self.extract_max_chars,
            max_uncompressed_bytes=self.extract_max_uncompressed_bytes,
            max_compression_ratio=self.extract_max_compression_ratio,
        )

    @property
    def isolation_limits(self) -> IsolationLimits:
        return IsolationLimits(
            memory_bytes=self.extract_memory_bytes,
            cpu_seconds=self.extract_cpu_seconds,
            idle_seconds=self.extract_idle_seconds,
        )


def _cap_memory(memory_bytes: int) -> None:
    """The child's initializer: no allocation beyond ``memory_bytes`` of address space, and a
    lower CPU priority than the services (parsing a hostile file must not slow everyone)."""
    resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
    os.nice(10)
    _die_with_parent()


def _die_with_parent() -> None:
    """Linux: end this child when the worker that started it dies (even by SIGKILL), instead
    of leaving an orphan behind."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGKILL)
        if os.getppid() == 1:  # the parent died before we asked
            os._exit(1)


def _extract_capped(path: str, mime: str, limits: ExtractionLimits, cpu_seconds: int) -> Extracted:
    """In the child: this file may use ``cpu_seconds`` more CPU (the kernel sends SIGXCPU, which
    ends the child, past it); running out of memory becomes a plain failure."""
    used = resource.getrusage(resource.RUSAGE_SELF)
    spent = int(used.ru_utime + used.ru_stime) + 1
    _, hard = resource.getrlimit(resource.RLIMIT_CPU)
    soft = spent + cpu_seconds
    resource.setrlimit(
        resource.RLIMIT_CPU, (soft if hard == resource.RLIM_INFINITY else min(soft, hard), hard)
    )
    try:
        return extract(Path(path), mime, limits)
    except MemoryError:
        raise ExtractionError("Reading the file needed more memory than allowed") from None


class IsolatedExtractor:
    """Extraction in one capped child process, one file at a time: a file that kills the child
    fails alone, never a file that happened to share it. (Extraction is a small part of
    ingestion next to embedding, so one child keeps up.)"""

    def __init__(
        self, limits: ExtractionLimits = ExtractionLimits(), isolation: IsolationLimits = IsolationLimits()
    ) -> None:
        self.limits = limits
        self.isolation = isolation
        self._pool: ProcessPoolExecutor | None = None
        self._one_at_a_time = asyncio.Lock()
        self._active = 0  # extractions running or waiting for the child
        self._idle_timer: asyncio.TimerHandle | None = None

    def _executor(self) -> ProcessPoolExecutor:
        if self._pool is None:
            self._pool = ProcessPoolExecutor(
                max_workers=1,
                mp_context=multiprocessing.get_context("spawn"),  # no fork of a threaded process
                initializer=_cap_memory,
                initargs=(self.isolation.memory_bytes,),
            )
        return self._pool

    async def extract(self, path: Path, mime: str) -> Extracted:
        loop = asyncio.get_running_loop()
        job = (str(path), mime, self.limits, self.isolation.cpu_seconds)
        self._active += 1
        try:
            async with self._one_at_a_time:
                return await loop.run_in_executor(self._executor(), _extract_capped, *job)
        except BrokenProcessPool:
            self._discard()  # the child died (CPU limit, or killed outright): the next file gets a new one
            raise ExtractionError(
                f"Reading the file needed more than {self.isolation.cpu_seconds} s of CPU or "
                f"{self.isolation.memory_bytes / 2**20:,.0f} MB of memory"
            ) from None
        except MemoryError:  # could not even receive the result
            self._discard()
            raise ExtractionError("Reading the file needed more memory than allowed") from None
        finally:
            self._active -= 1
            self._retire_when_idle(loop)

    def _retire_when_idle(self, loop: asyncio.AbstractEventLoop) -> None:
        """(Re)start the idle countdown once nothing is running or waiting: the child exits
        when it ends, unless a file came meanwhile."""
        if self._idle_timer is not None:
            self._idle_timer.cancel()
            self._idle_timer = None
        if self._active == 0 and self._pool is not None and self.isolation.idle_seconds > 0:
            self._idle_timer = loop.call_later(self.isolation.idle_seconds, self._retire_if_idle)

    def _retire_if_idle(self) -> None:
        self._idle_timer = None
        if self._active == 0:
            self._discard()

    def _discard(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None

    def close(self) -> None:
        if self._idle_timer is not None:
            self._idle_timer.cancel()
            self._idle_timer = None
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
