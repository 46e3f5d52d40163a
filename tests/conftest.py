"""Test fixtures: a fresh PostgreSQL database per session, a Redis db flushed at start, and
the real processes (the Procfile under supervisord, exactly as ``make run`` starts them)."""

import asyncio
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import httpx
import pytest
import redis

from services.auth.tokens import generate_private_key_file
from services.mail.crypto import generate_key
from shared.migrate import MigrateSettings, migrate
from shared.registry import health_path
from tests.gmail_stub import GmailStub
from tests.support import ROOT, Process, free_port, python, wait_healthy

ADMIN_SERVER = os.environ.get("PAI_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432")
TEST_REDIS_URL = os.environ.get("PAI_TEST_REDIS_URL", "redis://127.0.0.1:6379/9")
ADMIN_PASSWORD = "correct horse battery staple 42"
FRONTEND_URL = "http://frontend.test/settings/mail"


@contextmanager
def fresh_database() -> Iterator[str]:
    """A database made and migrated for the caller, dropped afterwards."""
    name = f"pai_test_{uuid.uuid4().hex[:12]}"
    url = f"{ADMIN_SERVER}/{name}"
    migrate(MigrateSettings(database_url=url), create_database=True)
    try:
        yield url
    finally:

        async def drop() -> None:
            conn = await asyncpg.connect(f"{ADMIN_SERVER}/postgres")
            try:
                await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            finally:
                await conn.close()

        asyncio.run(drop())


@pytest.fixture(scope="session")
def database_url() -> Iterator[str]:
    with fresh_database() as url:
        yield url


@pytest.fixture(scope="session")
def redis_url() -> str:
    redis.Redis.from_url(TEST_REDIS_URL).flushdb()
    return TEST_REDIS_URL


@pytest.fixture(scope="session")
def key_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("keys") / "jwt_ed25519.pem"
    generate_private_key_file(path)
    return path


@pytest.fixture(scope="session")
def gmail_server() -> Iterator[GmailStub]:
    """The Gmail/Google OAuth stand-in every mail process of the stack talks to."""
    with GmailStub() as stub:
        yield stub


@pytest.fixture
def gmail(gmail_server: GmailStub) -> Iterator[GmailStub]:
    """The shared stand-in; fault knobs go back to normal after the test (mailboxes stay:
    each test uses its own addresses)."""
    yield gmail_server
    with gmail_server.lock:
        gmail_server.quota_units_per_second = None
        gmail_server.latency_seconds = 0.0
        gmail_server.consent_denied = False
        gmail_server.granted_scopes = None
        gmail_server._faults.clear()


@pytest.fixture(scope="session")
def base_env(
    database_url: str, redis_url: str, key_file: Path, gmail_server: GmailStub, tmp_path_factory
) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PAI_")}
    env.update(
        PATH=f"{Path(sys.executable).parent}:{env.get('PATH', '')}",
        PYTHONUNBUFFERED="1",
        PAI_DATABASE_URL=database_url,
        PAI_REDIS_URL=redis_url,
        PAI_JWT_PRIVATE_KEY_FILE=str(key_file),
        PAI_DATA_DIR=str(tmp_path_factory.mktemp("data")),
        PAI_MAX_UPLOAD_BYTES=str(3 * 1024 * 1024),
        PAI_RECOVER_INTERVAL_SECONDS="5",
        PAI_MAIL_TOKEN_KEYS=generate_key(),
        PAI_FRONTEND_URL=FRONTEND_URL,
        PAI_GMAIL_BACKOFF_MAX_SECONDS="2",
        # Every test signs up and in from 127.0.0.1: the per-IP budgets are tested on their own.
        PAI_LOGIN_IP_RATE_LIMIT="100000/minute",
        PAI_REGISTER_IP_RATE_LIMIT="100000/minute",
        PAI_REFUSED_TOKEN_RATE_LIMIT="100000/minute",
        HF_HUB_OFFLINE="1",
        **gmail_server.service_env(),
    )
    return env


@dataclass
class Stack:
    gateway: str
    auth: str
    documents: str
    mail: str
    embeddings: str
    assistant: str
    llm: str
    process: Process
    env: dict[str, str]


@pytest.fixture(scope="session")
def stack(base_env: dict[str, str], tmp_path_factory) -> Iterator[Stack]:
    """Every process of ``make run`` (gateway, services, workers), supervised as it does."""
    names = ("gateway", "auth", "documents", "mail", "embeddings", "assistant", "llm")
    ports = {name: free_port() for name in names}
    urls = {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}
    env = {
        **base_env,
        **{f"PAI_{name.upper()}_PORT": str(port) for name, port in ports.items()},
        **{f"PAI_{name.upper()}_URL": urls[name] for name in names if name != "gateway"},
        "PAI_JWKS_URL": f"{urls['auth']}/auth/.well-known/jwks.json",
        "PAI_OAUTH_REDIRECT_URI": f"{urls['gateway']}/mail/oauth/callback",
        "PAI_PUBLIC_URL": urls["gateway"],
    }
    log = tmp_path_factory.mktemp("stack") / "stack.log"
    process = Process(python("infra/supervise.py", "Procfile"), env, log).start()
    try:
        for name, url in urls.items():
            wait_healthy(url + health_path(name), process, timeout=60)
        yield Stack(process=process, env=env, **urls)
    finally:
        process.stop()


@pytest.fixture(scope="session")
def start_service(stack: Stack, tmp_path_factory) -> Iterator[Callable[..., tuple[str, Process]]]:
    """Start one more instance of a service with overridden settings; returns (url, process)."""
    started: list[Process] = []

    def start(service: str, port: int | None = None, **settings: str) -> tuple[str, Process]:
        port = port or free_port()
        env = {**stack.env, **{f"PAI_{k.upper()}": v for k, v in settings.items()}}
        log = tmp_path_factory.mktemp(service) / f"{service}.log"
        args = python("-m", f"services.{service}", "serve", "--host", "127.0.0.1", "--port", str(port))
        process = Process(args, env, log).start()
        started.append(process)
        wait_healthy(f"http://127.0.0.1:{port}/healthz", process)
        return f"http://127.0.0.1:{port}", process

    yield start
    for process in started:
        process.stop()


@pytest.fixture(scope="session")
def stub_upstream(tmp_path_factory) -> Iterator[str]:
    port = free_port()
    log = tmp_path_factory.mktemp("stub") / "stub.log"
    process = Process(
        python(str(ROOT / "tests" / "upstream_stub.py"), str(port)), dict(os.environ), log
    ).start()
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(f"{url}/healthz", process)
        yield url
    finally:
        process.stop()


@pytest.fixture
async def gateway(stack: Stack) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=stack.gateway, timeout=30.0) as client:
        yield client


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[asyncpg.Connection]:
    """An admin connection for looking behind the API."""
    conn = await asyncpg.connect(database_url)
    try:
        yield conn
    finally:
        await conn.close()


@dataclass
class Account:
    id: str
    username: str
    email: str
    password: str
    access_token: str
    refresh_token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.access_token}"}


async def login(client: httpx.AsyncClient, username: str, password: str) -> dict:
    response = await client.post("/auth/token", data={"username": username, "password": password})
    assert response.status_code == 200, response.text
    return response.json()


@pytest.fixture
def new_account(gateway: httpx.AsyncClient) -> Callable:
    async def create(prefix: str = "user") -> Account:
        username = f"{prefix}_{uuid.uuid4().hex[:10]}"
        email = f"{username}@example.com"
        password = "s3cret-password"
        response = await gateway.post(
            "/auth/register", json={"email": email, "username": username, "password": password}
        )
        assert response.status_code == 201, response.text
        tokens = await login(gateway, username, password)
        return Account(
            response.json()["id"], username, email, password, tokens["access_token"], tokens["refresh_token"]
        )

    return create


@pytest.fixture(scope="session")
def admin_cli(stack: Stack) -> Callable[..., subprocess.CompletedProcess]:
    """Run ``python -m services.auth create-admin`` (what ``make admin`` runs)."""

    def run(username: str, email: str, password: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            python("-m", "services.auth", "create-admin", "--username", username, "--email", email),
            cwd=ROOT,
            env={**stack.env, "ADMIN_PASSWORD": password},
            capture_output=True,
            text=True,
            stdin=subprocess.DEVNULL,
            timeout=60,
            check=False,
        )

    return run


@pytest.fixture
async def new_admin(admin_cli, gateway: httpx.AsyncClient) -> Callable:
    async def create() -> Account:
        username = f"admin_{uuid.uuid4().hex[:10]}"
        email = f"{username}@example.com"
        result = admin_cli(username, email, ADMIN_PASSWORD)
        assert result.returncode == 0, result.stderr
        tokens = await login(gateway, username, ADMIN_PASSWORD)
        me = (
            await gateway.get("/auth/me", headers={"Authorization": f"Bearer {tokens['access_token']}"})
        ).json()
        return Account(
            me["id"], username, email, ADMIN_PASSWORD, tokens["access_token"], tokens["refresh_token"]
        )

    return create
