"""The gateway: token checks (and the same checks in each service), header hygiene, streaming,
rate limits, upstream failures, request ids, logs, metrics, readiness and the combined docs."""

import base64
import hashlib
import hmac
import json
import threading
import time
import uuid

import httpx
import jwt
import psutil
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from services.auth.tokens import key_id
from tests.support import free_port, wait_for

MB = 1024 * 1024


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class Forger:
    """Makes tokens: valid ones with our key, and every kind of attack on them."""

    def __init__(self, key_file, user_id: str) -> None:
        self.key = serialization.load_pem_private_key(key_file.read_bytes(), password=None)
        self.kid = key_id(self.key.public_key())
        self.user_id = user_id

    def claims(self, **overrides) -> dict:
        now = int(time.time())
        claims = {
            "iss": "pai-auth",
            "aud": "pai-api",
            "sub": self.user_id,
            "iat": now,
            "exp": now + 300,
            "jti": uuid.uuid4().hex,
            "roles": [],
        }
        claims.update(overrides)
        return claims

    def sign(self, key=None, kid: str | None = None, **overrides) -> str:
        return jwt.encode(
            self.claims(**overrides), key or self.key, algorithm="EdDSA", headers={"kid": kid or self.kid}
        )

    def unsigned(self, header: dict, signature: bytes = b"", **overrides) -> str:
        head = b64(json.dumps(header).encode())
        body = b64(json.dumps(self.claims(**overrides)).encode())
        return f"{head}.{body}.{b64(signature)}"

    def hs256_with_public_key(self) -> str:
        public_pem = self.key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        header = {"alg": "HS256", "typ": "JWT", "kid": self.kid}
        unsigned = self.unsigned(header).rsplit(".", 1)[0]
        signature = hmac.new(public_pem, unsigned.encode(), hashlib.sha256).digest()
        return f"{unsigned}.{b64(signature)}"

    def tampered(self, other_user: str) -> str:
        head, _, signature = self.sign().split(".")
        body = b64(json.dumps(self.claims(sub=other_user, roles=["admin"])).encode())
        return f"{head}.{body}.{signature}"


ATTACKS = {
    "alg_none": lambda f, other: f.unsigned({"alg": "none", "typ": "JWT", "kid": f.kid}),
    "hs256_signed_with_public_key": lambda f, other: f.hs256_with_public_key(),
    "other_key_same_kid": lambda f, other: f.sign(key=Ed25519PrivateKey.generate()),
    "unknown_kid": lambda f, other: f.sign(kid="not-a-known-key"),
    "tampered_payload": lambda f, other: f.tampered(other),
    "expired": lambda f, other: f.sign(exp=int(time.time()) - 60, iat=int(time.time()) - 960),
    "wrong_audience": lambda f, other: f.sign(aud="someone-else"),
    "wrong_issuer": lambda f, other: f.sign(iss="https://evil.example"),
    "missing_subject": lambda f, other: f.unsigned({"alg": "EdDSA", "kid": f.kid}),
    "garbage": lambda f, other: "not.a.jwt",
}

TARGETS = {
    "gateway": ("gateway", "/auth/me"),
    "auth_direct": ("auth", "/auth/me"),
    "documents_direct": ("documents", "/documents"),
    "mail_direct": ("mail", "/mail/accounts"),
}


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("attack", ATTACKS)
async def test_forged_tokens_are_401_everywhere(stack, key_file, new_account, target, attack):
    victim, attacker = await new_account(), await new_account()
    forger = Forger(key_file, attacker.id)
    service, path = TARGETS[target]
    async with httpx.AsyncClient(base_url=getattr(stack, service)) as client:
        control = await client.get(path, headers={"Authorization": f"Bearer {forger.sign()}"})
        assert control.status_code == 200, "a correctly signed token must pass (test sanity)"
        token = ATTACKS[attack](forger, victim.id)
        response = await client.get(path, headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert response.json()["error"]["code"] == "unauthorized"


@pytest.mark.parametrize("header", [None, "Basic dXNlcjpwYXNz", "Bearer", "Token abc"])
async def test_missing_or_non_bearer_credentials_are_401(gateway, header):
    headers = {"Authorization": header} if header else {}
    response = await gateway.get("/documents", headers=headers)
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"


async def test_spoofed_identity_header_is_ignored(gateway, new_account):
    me, other = await new_account(), await new_account()
    response = await gateway.get(
        "/auth/me", headers={**me.headers, "X-User-Id": other.id, "X-User-Roles": "admin"}
    )
    assert response.status_code == 200
    assert response.json()["id"] == me.id


@pytest.fixture(scope="module")
def stub_gateway(start_service, stub_upstream):
    """A gateway whose documents service is the stub (counts, echoes, streams, stalls)."""
    url, process = start_service(
        "gateway", documents_url=stub_upstream, upstream_timeout_seconds="1", log_level="WARNING"
    )
    return url, process


async def test_identity_and_internal_headers_never_reach_a_service(stub_gateway, new_account):
    url, _ = stub_gateway
    account = await new_account()
    spoofed = {
        "X-User-Id": str(uuid.uuid4()),
        "X-User-Roles": "admin",
        "X-Internal-Purge": "1",
        "X-Forwarded-For": "6.6.6.6",
        "Forwarded": "for=6.6.6.6",
    }
    async with httpx.AsyncClient(base_url=url) as client:
        response = await client.get("/documents/echo", headers={**account.headers, **spoofed})
    assert response.status_code == 200
    seen = response.json()["headers"]
    for name in ("x-user-id", "x-user-roles", "x-internal-purge", "forwarded"):
        assert name not in seen
    assert seen["x-forwarded-for"] == "127.0.0.1"
    assert seen["authorization"] == account.headers["Authorization"]  # services verify it again
    assert seen["x-request-id"] == response.headers["x-request-id"]


class PeakMemory:
    """Samples a process's resident memory in a thread while a transfer runs."""

    def __init__(self, pid: int) -> None:
        self.process = psutil.Process(pid)
        self.baseline = self.process.memory_info().rss
        self.peak = self.baseline
        self._running = True
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while self._running:
            self.peak = max(self.peak, self.process.memory_info().rss)
            time.sleep(0.02)

    def __enter__(self) -> "PeakMemory":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._running = False
        self._thread.join()

    @property
    def growth_mb(self) -> float:
        return (self.peak - self.baseline) / MB


async def test_a_200_mb_upload_streams_through_in_flat_memory(stub_gateway, new_account):
    url, process = stub_gateway
    account = await new_account()
    size, chunk = 200 * MB, b"\0" * (256 * 1024)

    async def body():
        for _ in range(size // len(chunk)):
            yield chunk

    async with httpx.AsyncClient(base_url=url, timeout=120) as client:
        await client.post("/documents/sink", headers=account.headers, content=b"warm-up")
        with PeakMemory(process.pid) as memory:
            response = await client.post(
                "/documents/sink",
                headers={**account.headers, "Content-Length": str(size)},
                content=body(),
            )
    assert response.status_code == 200
    assert response.json()["received"] == size
    assert memory.growth_mb < 16, f"gateway memory grew {memory.growth_mb:.1f} MB"


async def test_chunked_uploads_and_encoded_paths_pass_through_unchanged(stub_gateway, new_account):
    url, _ = stub_gateway
    account = await new_account()

    async def body():
        for _ in range(10):
            yield b"z" * 100_000

    async with httpx.AsyncClient(base_url=url) as client:
        chunked = await client.post("/documents/sink", headers=account.headers, content=body())
        encoded = await client.get("/documents/a%20b%2Fc/echo", params={"q": "x&y"}, headers=account.headers)
    assert chunked.status_code == 200 and chunked.json()["received"] == 1_000_000
    assert encoded.json()["raw_path"] == "/documents/a%20b%2Fc/echo"  # not decoded on the way
    assert encoded.json()["query"] == "q=x%26y"
    assert encoded.json()["headers"]["host"].startswith("127.0.0.1")


async def test_a_200_mb_download_streams_through_in_flat_memory(stub_gateway, new_account):
    url, process = stub_gateway
    account = await new_account()
    size = 200 * MB
    async with httpx.AsyncClient(base_url=url, timeout=120) as client:
        await client.get("/documents/big", params={"size": 1024}, headers=account.headers)
        received = 0
        with PeakMemory(process.pid) as memory:
            async with client.stream(
                "GET", "/documents/big", params={"size": size}, headers=account.headers
            ) as response:
                assert response.status_code == 200
                assert response.headers["content-length"] == str(size)
                async for part in response.aiter_raw():
                    received += len(part)
    assert received == size
    assert memory.growth_mb < 16, f"gateway memory grew {memory.growth_mb:.1f} MB"


async def test_upstream_timeout_is_504_json(stub_gateway, new_account):
    url, _ = stub_gateway
    account = await new_account()
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        response = await client.get("/documents/slow", params={"seconds": 5}, headers=account.headers)
    assert response.status_code == 504
    assert response.json()["error"]["code"] == "upstream_timeout"


async def test_upstream_down_is_503_json_and_readiness_says_which(start_service, new_account):
    url, _ = start_service("gateway", mail_url=f"http://127.0.0.1:{free_port()}")
    account = await new_account()
    async with httpx.AsyncClient(base_url=url) as client:
        response = await client.get("/mail/accounts", headers=account.headers)
        ready = await client.get("/readyz")
        docs = await client.get("/documents", headers=account.headers)
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "service_unavailable"
    assert docs.status_code == 200  # the others still work
    assert ready.status_code == 503
    checks = ready.json()["checks"]
    assert checks["mail"]["status"] == "fail"
    assert checks["auth"]["status"] == checks["redis"]["status"] == "ok"


async def test_rate_limit_is_per_user_with_retry_after(start_service, new_account):
    url, _ = start_service("gateway", rate_limit="5/minute")
    first, second = await new_account(), await new_account()
    async with httpx.AsyncClient(base_url=url) as client:
        statuses = [(await client.get("/documents", headers=first.headers)).status_code for _ in range(6)]
        limited = await client.get("/documents", headers=first.headers)
        other = await client.get("/documents", headers=second.headers)
    assert statuses[:5] == [200] * 5 and statuses[5] == 429
    assert limited.json()["error"]["code"] == "rate_limited"
    assert 0 < int(limited.headers["retry-after"]) <= 60
    assert other.status_code == 200


async def test_unknown_path_and_method_are_json(gateway, new_account):
    account = await new_account()
    missing = await gateway.get("/nowhere", headers=account.headers)
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
    not_routed = await gateway.get("/documents/nope/nope", headers=account.headers)
    assert not_routed.status_code == 404 and "error" in not_routed.json()


async def test_request_id_is_passed_through_returned_and_logged_by_every_service(stack, gateway, new_account):
    account = await new_account()
    request_id = f"test-{uuid.uuid4().hex}"
    response = await gateway.get("/auth/me", headers={**account.headers, "X-Request-ID": request_id})
    assert response.headers["x-request-id"] == request_id
    generated = await gateway.get("/auth/me", headers=account.headers)
    assert len(generated.headers["x-request-id"]) == 32

    def lines():
        return [
            r
            for r in stack.process.json_lines()
            if r.get("request_id") == request_id and r.get("event") == "request"
        ]

    records = wait_for(lambda: len(lines()) >= 2 and lines())
    assert {r["service"] for r in records} == {"gateway", "auth"}
    for record in records:
        assert record["user_id"] == account.id
        assert record["status"] == 200
        assert record["duration_ms"] >= 0
    assert {r["route"] for r in records} == {"/auth/{path:path}", "/auth/me"}


@pytest.mark.parametrize("service", ["gateway", "auth", "documents", "mail"])
async def test_metrics_use_route_templates_and_no_user_ids(stack, new_account, service):
    account = await new_account()
    async with httpx.AsyncClient(base_url=getattr(stack, service)) as client:
        if service == "auth":
            await client.get("/auth/me", headers=account.headers)
        await client.get("/healthz")
        text = (await client.get("/metrics")).text
    assert f'service="{service}"' in text
    assert "http_request_duration_seconds_bucket" in text
    assert 'route="/healthz"' in text
    assert account.id not in text


async def test_readiness_reports_every_dependency(gateway):
    response = await gateway.get("/readyz")
    assert response.status_code == 200
    checks = response.json()["checks"]
    assert set(checks) == {"redis", "auth", "documents", "mail", "assistant"}
    for name in ("auth", "documents", "mail", "assistant"):
        assert checks[name]["checks"]["postgres"]["status"] == "ok"
        assert checks[name]["checks"]["redis"]["status"] == "ok"


async def test_combined_openapi_and_docs(gateway):
    spec = (await gateway.get("/openapi.json")).json()
    for path in ("/auth/token", "/auth/me", "/admin/users", "/documents", "/mail/accounts"):
        assert path in spec["paths"], path
    assert "auth.UserOut" in spec["components"]["schemas"]
    docs = await gateway.get("/docs")  # Swagger UI, started by a file of ours on /openapi.json
    assert docs.status_code == 200 and "/api-docs/init.js" in docs.text
    assert "/openapi.json" in (await gateway.get("/api-docs/init.js")).text
