"""Shared pieces of the document benchmarks (``bench/ingest.py``, ``bench/search.py``).

The throw-away database, Redis db, service start-up and log-in come from ``bench/gateway.py``;
this module adds what the document benchmarks need on top: the whole stack in one context
manager (with the documents API and, optionally, its ARQ worker), a deterministic generator of
English-like prose, and a keep-alive connection that can send a different GET every time.
"""

from __future__ import annotations

import contextlib
import os
import platform
import random
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # `python bench/x.py` puts bench/, not the root, on the path
    sys.path.insert(0, str(ROOT))
# Read when huggingface_hub is first imported: no "Loading weights" bar when the bench loads the model.
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")

import httpx  # noqa: E402
import psutil  # noqa: E402
import redis  # noqa: E402
from gateway import (  # noqa: E402
    IDLE_WARNING_PERCENT,
    REDIS_URL,
    RawConnection,
    flushed_redis,
    log_in,
    percentile,
    service,
    temporary_database,
)

from services.auth.tokens import generate_private_key_file  # noqa: E402
from shared.logging import configure_logging  # noqa: E402
from shared.tasks import QUEUES  # noqa: E402
from tests.support import Process, free_port, python  # noqa: E402

__all__ = [
    "REDIS_URL",
    "Prose",
    "Stack",
    "VaryingConnection",
    "describe_machine",
    "percentile",
    "stack",
    "warn_if_contended",
]

WORKER_READY_TIMEOUT = 120.0
OTHER_WARNING_PERCENT = 25.0  # of one core, outside the processes a window measures


# --------------------------------------------------------------------------- machine


def describe_machine(title: str) -> None:
    """The header line (core count included) and a warning when the machine is not idle; also
    keeps the libraries' info logs (model loaded, ...) out of the bench's own output."""
    configure_logging("bench", "WARNING")
    print(
        f"{title}; {os.cpu_count()} cores ({platform.machine()}, Python {platform.python_version()})",
        flush=True,
    )
    busy = psutil.cpu_percent(interval=1.0)
    if busy > IDLE_WARNING_PERCENT:
        print(
            f"warning: the machine was already {busy:.0f}% busy before the benchmark; numbers will be noisy"
        )


def warn_if_contended(windows: dict[str, dict[str, float]]) -> None:
    """Name the windows where processes outside the benchmark took a good share of a core."""
    for name, cpu in windows.items():
        if cpu.get("other", 0.0) > OTHER_WARNING_PERCENT:
            print(
                f"warning: during {name}, {cpu['other']:.0f}% of a core went to processes outside the "
                "benchmark (or to Postgres/Redis/the kernel): its numbers are not trustworthy, run again"
            )


# --------------------------------------------------------------------------- the stack


@dataclass
class Stack:
    workdir: Path
    env: dict[str, str]
    urls: dict[str, str]
    redis_url: str
    processes: dict[str, Process] = field(default_factory=dict)
    token: str = ""

    @property
    def data_dir(self) -> Path:
        return Path(self.env["PAI_DATA_DIR"])

    @property
    def gateway(self) -> str:
        return self.urls["gateway"]

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def user_id(self) -> str:
        response = httpx.get(self.urls["auth"] + "/auth/me", headers=self.headers(), timeout=30.0)
        response.raise_for_status()
        return response.json()["id"]


@contextlib.contextmanager
def worker(env: dict[str, str], logs: Path, redis_url: str) -> Iterator[Process]:
    """``python -m services.documents worker``, returned once it polls its queue (model loaded).

    ARQ writes ``<queue>:health-check`` on its first poll, after ``on_startup`` has loaded the
    model and opened the store: from then on a queued job starts within its 0.5 s poll delay.
    """
    process = Process(python("-m", "services.documents", "worker"), env, logs / "worker.log").start()
    client = redis.Redis.from_url(redis_url)
    try:
        deadline = time.monotonic() + WORKER_READY_TIMEOUT
        key = QUEUES["documents"] + ":health-check"
        while not client.exists(key):
            if process.popen is not None and process.popen.poll() is not None:
                raise RuntimeError(f"the documents worker exited early:\n{process.log_text()[-3000:]}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"the documents worker was not ready after {WORKER_READY_TIMEOUT:g} s")
            time.sleep(0.1)
        yield process
    finally:
        client.close()
        process.stop()


@contextlib.contextmanager
def stack(
    *,
    with_worker: bool,
    keep_logs: bool = False,
    extra_env: dict[str, str] | Callable[[dict[str, str]], dict[str, str]] | None = None,
    services: tuple[str, ...] = ("auth", "gateway", "documents"),
) -> Iterator[Stack]:
    """Auth, gateway and documents API (and the worker if asked) on a throw-away database, key,
    Redis db and data dir, with a registered user's token; all removed on exit, Ctrl-C included.

    ``extra_env`` is added to every process's environment: a dict, or a function of the services'
    URLs (``{"gateway": "http://127.0.0.1:<port>", ...}``) returning one, for settings that name
    a service (an OAuth redirect URI on the gateway, say)."""
    workdir = Path(tempfile.mkdtemp(prefix="pai-bench-"))  # key, data dir, service logs
    try:
        with contextlib.ExitStack() as stack:
            database_url = stack.enter_context(temporary_database())
            redis_url = stack.enter_context(flushed_redis(REDIS_URL))
            key_file = workdir / "jwt_ed25519.pem"
            generate_private_key_file(key_file)
            names = ("auth", "gateway", "documents", "mail", "embeddings", "assistant", "llm")
            ports = {name: free_port() for name in names}
            urls = {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}
            env = {k: v for k, v in os.environ.items() if not k.startswith("PAI_")}
            env.update(
                PYTHONUNBUFFERED="1",
                HF_HUB_OFFLINE="1",
                TRANSFORMERS_OFFLINE="1",
                PAI_LOG_LEVEL="WARNING",
                PAI_DATABASE_URL=database_url,
                PAI_REDIS_URL=redis_url,
                PAI_JWT_PRIVATE_KEY_FILE=str(key_file),
                PAI_DATA_DIR=str(workdir / "data"),
                PAI_AUTH_URL=urls["auth"],
                PAI_DOCUMENTS_URL=urls["documents"],
                PAI_MAIL_URL=urls["mail"],  # listened on only when ``services`` has "mail"
                PAI_EMBEDDINGS_URL=urls["embeddings"],
                PAI_ASSISTANT_URL=urls["assistant"],  # listened on only when ``services`` has it
                PAI_LLM_URL=urls["llm"],
                PAI_JWKS_URL=f"{urls['auth']}/auth/.well-known/jwks.json",
                PAI_RATE_LIMIT="100000000/minute",
            )
            env.update((extra_env(urls) if callable(extra_env) else extra_env) or {})
            result = Stack(workdir, env, urls, redis_url)
            in_process = env.get("PAI_EMBEDDING_BACKEND", "server") != "server"
            if not in_process and {"documents", "mail"} & set(services) and "embeddings" not in services:
                services = ("embeddings", *services)  # the one model copy documents and mail ask
            for name in services:
                result.processes[name] = stack.enter_context(service(name, ports[name], env, workdir))
            if with_worker:
                result.processes["worker"] = stack.enter_context(worker(env, workdir, redis_url))
            result.token = log_in(urls["auth"])
            try:
                yield result
            except Exception:
                for log in sorted(workdir.glob("*.log")):
                    text = log.read_text(errors="replace")[-2000:]
                    print(f"--- last lines of {log.name}:\n{text}", file=sys.stderr)
                raise
    finally:
        if keep_logs:
            print(f"logs kept in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


# --------------------------------------------------------------------------- client


class VaryingConnection(RawConnection):
    """One keep-alive HTTP/1.1 connection (as the gateway benchmark's) sending GET ``path``."""

    def __init__(self, base_url: str, token: str) -> None:
        super().__init__(base_url, token)
        self._token = token

    async def get(self, path: str) -> tuple[int, bytes]:
        self._request = (
            f"GET {path} HTTP/1.1\r\nHost: {self._host}:{self._port}\r\n"
            f"Authorization: Bearer {self._token}\r\nAccept: */*\r\n\r\n"
        ).encode()
        return await self.fetch()


# --------------------------------------------------------------------------- prose

# topic: (nouns, places, people), each a comma-separated list
_TOPIC_WORDS: dict[str, tuple[str, str, str]] = {
    "gardening": (
        "soil, compost, seedling, orchard, hedge, greenhouse, tomato plant, rose bed, watering can, "
        "mulch, root system, apple tree, herb garden, frost, harvest",
        "the allotment, the walled garden, the nursery, the south border, the vegetable patch",
        "the gardener, my neighbour, the old botanist, a volunteer, the head grower",
    ),
    "astronomy": (
        "telescope, comet, nebula, star chart, eclipse, orbit, moon, meteor shower, observatory dome, "
        "spectrum, galaxy, dwarf planet, lens, night sky, satellite",
        "the observatory, the hilltop, the dark-sky park, the planetarium, the desert camp",
        "the astronomer, an amateur observer, the night assistant, the survey team, a student",
    ),
    "cooking": (
        "sourdough, stock, pastry, spice blend, cast-iron pan, recipe, oven, broth, knife, sauce, "
        "marinade, loaf, kitchen scale, dumpling, risotto",
        "the kitchen, the bakery, the market stall, the village inn, the test kitchen",
        "the chef, my grandmother, the pastry cook, the apprentice, the food writer",
    ),
    "history": (
        "treaty, archive, manuscript, harbour, fortress, census, guild, parliament, trade route, "
        "chronicle, monastery, railway, coin hoard, charter, uprising",
        "the old capital, the river port, the county record office, the abbey, the frontier",
        "the historian, a merchant, the town clerk, the archivist, a travelling monk",
    ),
    "software": (
        "database, compiler, deployment, cache, test suite, release, queue, index, memory leak, protocol,"
        " scheduler, log file, dependency, migration, server",
        "the data centre, the staging cluster, the build farm, the office, the on-call rota",
        "the engineer, the release manager, a new hire, the maintainer, the reviewer",
    ),
    "sailing": (
        "mainsail, anchor, tide, harbour wall, compass, rigging, keel, squall, mooring, chart, hull, jib,"
        " swell, lighthouse, dinghy",
        "the estuary, the open channel, the marina, the sheltered bay, the northern cape",
        "the skipper, the crew, a harbour master, the navigator, an old fisherman",
    ),
    "medicine": (
        "clinic, vaccine, symptom, dosage, ward, blood test, fracture, therapy, prescription, diagnosis, "
        "recovery, infection, stethoscope, x-ray, nurse station",
        "the hospital, the rural clinic, the pharmacy, the research ward, the surgery",
        "the doctor, the patient, a junior nurse, the pharmacist, the surgeon",
    ),
    "music": (
        "violin, rehearsal, score, chord, concert hall, choir, metronome, melody, orchestra, recording, "
        "tempo, piano, harmony, tour, encore",
        "the conservatory, the studio, the cathedral, the festival stage, the practice room",
        "the conductor, the cellist, a young composer, the sound engineer, the soprano",
    ),
    "finance": (
        "budget, invoice, pension, mortgage, interest rate, ledger, tax return, savings account, "
        "quarterly report, dividend, loan, audit, expense, forecast, balance sheet",
        "the bank branch, the accounts office, the trading floor, the tax office, the board room",
        "the accountant, the auditor, a client, the treasurer, the financial adviser",
    ),
    "mountains": (
        "ridge, glacier, rope, summit, avalanche, trail, crampon, hut, scree slope, map, weather front, "
        "ice axe, valley, pass, snowfield",
        "the base camp, the alpine hut, the north face, the high pass, the valley floor",
        "the guide, the climbers, a shepherd, the rescue team, a lone hiker",
    ),
}


def _words(text: str) -> list[str]:
    """A comma-separated list of words or phrases."""
    return [word.strip() for word in text.split(",") if word.strip()]


_TOPICS = {topic: tuple(_words(group) for group in groups) for topic, groups in _TOPIC_WORDS.items()}
_ADJECTIVES = _words(
    "old, quiet, heavy, bright, narrow, careful, patient, sudden, steady, fragile, remote, crowded, "
    "simple, unusual, familiar, cold, warm, early, late, broken, hidden, useful, strange, modest, "
    "generous, expensive, cheap, rough, smooth, ancient, modern, reliable, awkward"
)
_ADVERBS = _words(
    "slowly, quickly, carefully, rarely, eventually, suddenly, quietly, openly, barely, gladly, "
    "reluctantly, patiently, almost, usually, seldom"
)
_VERBS_PAST = _words(
    "repaired, examined, described, replaced, moved, measured, noticed, ignored, tested, recorded, "
    "cleaned, studied, protected, questioned, improved, checked, counted, shared, sold, borrowed, "
    "painted, doubted, praised, explained, documented"
)
_VERBS_PRESENT = _words(
    "needs, shapes, changes, reveals, depends on, hides, supports, follows, protects, limits, explains, "
    "outlasts, resembles, affects"
)
_CONNECTORS = [
    f"{word},"
    for word in _words(
        "However, Meanwhile, In the end, At first, Later that year, For a while, As expected, "
        "Surprisingly, Even so, By the spring, Years later, On reflection"
    )
]
_TIMES = (
    "in the morning",
    "after the storm",
    "before the winter",
    "during the long summer",
    "at dawn",
    "every other week",
    "last autumn",
    "for three days",
    "since the spring",
    "on most evenings",
)
_TEMPLATES = (
    "{Person} {verb} the {adj} {noun} {time}.",
    "{Connector} {person} {adverb} {verb} the {noun} near {place}.",
    "The {noun} {present} the {noun2}, which is why {person} kept a {adj} {noun3} at {place}.",
    "Nobody at {place} expected the {adj} {noun} to matter so much {time}.",
    "{Person} wrote that the {noun} was {adj} but {adj2}, and that the {noun2} {present} everything.",
    "If the {noun} is {adj}, the {noun2} {adverb} {present} the {noun3}.",
    "{Connector} the {noun} and the {noun2} were both {verb} by {person}.",
    "Why does the {noun} feel so {adj} {time}? {Person} never found a clear answer.",
    "There were {count} {adj} reasons to keep the {noun}, and {person} listed every one of them.",
    "At {place}, the {noun} {present} how the {noun2} is used {time}.",
    "{Person} {adverb} {verb} the {noun}; the {noun2}, on the other hand, was left {adj}.",
    "It took {count} attempts before the {adj} {noun} could be {verb} properly.",
    "Most of the {noun} at {place} had been {verb} {time}, long before {person} arrived.",
    "The lesson was simple: a {adj} {noun} {present} a {adj2} {noun2}.",
    "{Connector} {person} asked whether the {noun} really {present} the {noun2}.",
)
_COUNTS = _words("two, three, four, five, six, seven, several, a dozen, twenty")


class Prose:
    """Deterministic English-like prose on a handful of topics: the same seed, the same text."""

    topics = tuple(_TOPICS)

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)

    def sentence(self, topic: str) -> str:
        rng = self.rng
        nouns, places, people = _TOPICS[topic]
        other = _TOPICS[rng.choice(self.topics)][0]  # a word from elsewhere now and then
        noun, noun2, noun3 = rng.sample(nouns, 3)
        if rng.random() < 0.15:
            noun3 = rng.choice(other)
        person = rng.choice(people)
        values = {
            "noun": noun,
            "noun2": noun2,
            "noun3": noun3,
            "place": rng.choice(places),
            "person": person,
            "Person": person[0].upper() + person[1:],
            "adj": rng.choice(_ADJECTIVES),
            "adj2": rng.choice(_ADJECTIVES),
            "adverb": rng.choice(_ADVERBS),
            "verb": rng.choice(_VERBS_PAST),
            "present": rng.choice(_VERBS_PRESENT),
            "time": rng.choice(_TIMES),
            "count": rng.choice(_COUNTS),
            "Connector": rng.choice(_CONNECTORS),
        }
        text = rng.choice(_TEMPLATES).format(**values)
        return text[0].upper() + text[1:]

    def paragraph(self, topic: str) -> str:
        return " ".join(self.sentence(topic) for _ in range(self.rng.randint(3, 9)))

    def document(self, topic: str, chars: int) -> str:
        """A title line, then paragraphs separated by blank lines until ``chars`` is reached."""
        parts = [f"Notes on {topic}: {self.sentence(topic)[:-1].lower()}"]
        size = len(parts[0])
        while size < chars:
            parts.append(self.paragraph(topic))
            size += len(parts[-1]) + 2
        return "\n\n".join(parts) + "\n"
