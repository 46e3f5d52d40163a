"""The stack under attack: what one hostile client costs everybody else.

What it measures
    A victim (a signed-in user) asks ``GET /documents`` and ``GET /auth/me`` through the
    gateway in a closed loop, first alone (the baseline, in the same run), then while each
    attack of the hardening issue runs for ``--seconds``:

    1. slow bodies: ``--slow`` connections send a ``POST /auth/register`` body a byte at a time;
    2. a DOCX zip bomb (0.3 MB that inflates to 200 MB) uploaded three times;
    5. an upload carrying thousands of small text fields (chunked, no length);
    6. a 19 KB PDF listing one page 3,000 times, uploaded three times;
    7. wrong passwords from one address, 20 at a time (400 in all).

    For each it prints the victim's p50/p95 and errors next to the baseline, the ratio of the
    p95s (target: within 2x, no 5xx), and what the attacker got back.

Processes, clean-up and settings as in ``bench/gateway.py`` (``PAI_BENCH_POSTGRES``,
``PAI_BENCH_REDIS_URL``). Run from the repository root: ``.venv/bin/python bench/abuse.py``.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path

# bench/ (``_stack``, ``gateway``) and the root (``services``, ``shared``), run as a script or with -m.
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx
from _stack import describe_machine, percentile, stack

from tests import files

Row = tuple[str, list[float], int, Counter]
PAGES_PDF = files.pdf_repeating_one_page(3000)


def bomb(i: int) -> bytes:
    return files.docx_bomb(200 * 2**20 + i * 6 * 2**16)


def pages(i: int) -> bytes:
    return PAGES_PDF + f"% copy {i} {uuid.uuid4()}\n".encode()  # trailing comments: still a PDF


async def victim(gateway: str, headers: dict[str, str], seconds: float) -> tuple[list[float], int]:
    """Latencies (ms) of the victim's requests for ``seconds``, and how many were 5xx."""
    latencies, errors = [], 0
    async with httpx.AsyncClient(base_url=gateway, headers=headers, timeout=30) as client:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            for path in ("/documents", "/auth/me"):
                started = time.perf_counter()
                response = await client.get(path)
                latencies.append((time.perf_counter() - started) * 1000)
                errors += response.status_code >= 500
    return sorted(latencies), errors


async def slow_bodies(gateway: str, _: dict[str, str], *, count: int = 100, seconds: float = 10) -> Counter:
    port = int(gateway.rsplit(":", 1)[1])
    head = (
        b"POST /auth/register HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: 900\r\n\r\n"
    )

    async def one() -> str:
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            return "refused"
        try:
            writer.write(head)
            deadline = time.monotonic() + seconds
            while time.monotonic() < deadline:
                writer.write(b"x")
                await writer.drain()
                try:
                    line = await asyncio.wait_for(reader.readline(), 0.5)
                    return line.split()[1].decode() if line.startswith(b"HTTP/") else "closed"
                except TimeoutError:
                    continue
            return "still open"
        except (OSError, IndexError):
            return "closed"
        finally:
            writer.close()

    return Counter(await asyncio.gather(*(one() for _ in range(count))))


async def uploads(
    gateway: str, headers: dict[str, str], name: str, make: Callable[[int], bytes], times: int
) -> Counter:
    async with httpx.AsyncClient(base_url=gateway, headers=headers, timeout=60) as client:
        statuses = Counter()
        for i in range(times):  # each copy differs, or the duplicate check would refuse it
            response = await client.post("/documents", files={"file": (f"{i}-{name}", make(i))})
            statuses[str(response.status_code)] += 1
        return statuses


async def many_fields(gateway: str, headers: dict[str, str]) -> Counter:
    boundary = "F" * 16

    async def body():
        for i in range(20_000):
            part = f'--{boundary}\r\nContent-Disposition: form-data; name="f{i}"\r\n\r\n'
            yield part.encode() + b"v" * 1000 + b"\r\n"
        yield f"--{boundary}--\r\n".encode()

    async with httpx.AsyncClient(base_url=gateway, timeout=60) as client:
        response = await client.post(
            "/documents",
            content=body(),
            headers={**headers, "Content-Type": f"multipart/form-data; boundary={boundary}"},
        )
    return Counter([str(response.status_code)])


async def bad_logins(gateway: str, _: dict[str, str]) -> Counter:
    statuses: Counter = Counter()
    async with httpx.AsyncClient(base_url=gateway, timeout=60) as client:
        for start in range(0, 400, 20):
            batch = [
                client.post("/auth/token", data={"username": f"nobody{start + i}", "password": "guess"})
                for i in range(20)
            ]
            for response in await asyncio.gather(*batch):
                statuses[str(response.status_code)] += 1
    return statuses


async def run(
    gateway: str, headers: dict[str, str], seconds: float
) -> list[tuple[str, list[float], int, Counter]]:
    baseline, errors = await victim(gateway, headers, seconds)
    rows = [("none (baseline)", baseline, errors, Counter())]
    attacks: list[tuple[str, Callable[[], Awaitable[Counter]]]] = [
        ("1 slow bodies x100", lambda: slow_bodies(gateway, headers)),
        ("2 DOCX zip bomb x3", lambda: uploads(gateway, headers, "bomb.docx", bomb, 3)),
        ("5 20k text fields", lambda: many_fields(gateway, headers)),
        (
            "6 PDF 3,000 pages x3",
            lambda: uploads(gateway, headers, "pages.pdf", pages, 3),
        ),
        ("7 400 bad logins", lambda: bad_logins(gateway, headers)),
    ]
    for name, attack in attacks:
        print(f"attack {name} ...", flush=True)
        attacker = asyncio.create_task(attack())
        latencies, errors = await victim(gateway, headers, seconds)
        outcome = await attacker
        rows.append((name, latencies, errors, outcome))
        await asyncio.sleep(2)  # let the worker settle between attacks
    return rows


def report(rows: list[Row]) -> None:
    base_p95 = percentile(rows[0][1], 95)
    print(
        f"\n{'attack':<24} {'requests':>8} {'p50 ms':>8} {'p95 ms':>8} {'p95/base':>9} {'5xx':>4}"
        "  attacker got"
    )
    for name, latencies, errors, outcome in rows:
        p95 = percentile(latencies, 95)
        ratio = p95 / base_p95 if base_p95 else 0.0
        verdict = "" if name.startswith("none") else ("  ok" if ratio <= 2 and errors == 0 else "  MISSES")
        got = ", ".join(f"{k}: {v}" for k, v in sorted(outcome.items()))
        print(
            f"{name:<24} {len(latencies):>8} {percentile(latencies, 50):>8.1f} {p95:>8.1f} {ratio:>8.2f}x"
            f" {errors:>4}{verdict}  {got}"
        )
    print("\ntarget: the victim's p95 within 2x of the baseline and no 5xx during every attack")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench/abuse.py", description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="victim window per attack (10)")
    options = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    describe_machine("abuse benchmark: a victim's latency while one client attacks")
    try:
        with stack(with_worker=True, services=("auth", "gateway", "documents")) as env:
            rows = asyncio.run(run(env.gateway, env.headers(), options.seconds))
    except KeyboardInterrupt:
        print("\ninterrupted; cleaned up", file=sys.stderr)
        return 130
    report(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
