"""Helpers for tests that run real processes: free ports, start/stop, wait until healthy."""

import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent


_GIVEN: set[int] = set()


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port() -> int:
    """A port nobody listens on, below the kernel's ephemeral range and never given out twice.
    A port from the ephemeral range can be taken as the local end of any outgoing connection
    (to Postgres, Redis, ...) between this call and the server's bind, which then fails with
    "address already in use" and, under the supervisor, restarts in a loop."""
    low = _ephemeral_low()
    for _ in range(1000):
        port = random.randint(max(1024, low // 2), low - 1)
        if port in _GIVEN:
            continue
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        _GIVEN.add(port)
        return port
    raise RuntimeError("no free port below the ephemeral range")


@dataclass
class Process:
    """A process group started by a test; its output goes to a log file we can read back."""

    args: list[str]
    env: dict[str, str]
    log_path: Path
    popen: subprocess.Popen | None = field(default=None, repr=False)

    def start(self) -> "Process":
        log = self.log_path.open("ab")
        self.popen = subprocess.Popen(
            self.args,
            cwd=ROOT,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own group: stop() ends every child too
        )
        return self

    @property
    def pid(self) -> int:
        assert self.popen is not None
        return self.popen.pid

    def stop(self) -> None:
        if self.popen is None or self.popen.poll() is not None:
            return
        os.killpg(self.popen.pid, signal.SIGTERM)
        try:
            self.popen.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(self.popen.pid, signal.SIGKILL)
            self.popen.wait()

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def json_lines(self) -> list[dict]:
        """Every JSON object logged (a ``name | `` prefix before it, if any, is skipped)."""
        records = []
        for line in self.log_text().splitlines():
            _, _, payload = line.rpartition(" | ") if " | {" in line else ("", "", line)
            if payload.startswith("{"):
                try:
                    records.append(json.loads(payload))
                except ValueError:
                    continue
        return records


def python(*args: str) -> list[str]:
    return [sys.executable, *args]


def wait_healthy(url: str, process: Process, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.popen is not None and process.popen.poll() is not None:
            raise RuntimeError(f"{process.args} exited early:\n{process.log_text()[-3000:]}")
        try:
            if httpx.get(url, timeout=1.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} not healthy after {timeout}s:\n{process.log_text()[-3000:]}")


class WaitTimeout(AssertionError):
    """What ``wait_for`` raises when the condition never held: the test fails there."""


def wait_for(predicate, timeout: float = 10.0, interval: float = 0.05):
    """Poll until ``predicate()`` is truthy and return its value; fail (raise
    :class:`WaitTimeout` with the last value) if it is still falsy after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    value = predicate()
    while not value:
        if time.monotonic() >= deadline:
            raise WaitTimeout(f"condition not met within {timeout}s; last value: {value!r}")
        time.sleep(interval)
        value = predicate()
    return value
