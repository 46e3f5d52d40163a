"""Liveness and readiness: ``/healthz`` says the process runs, ``/readyz`` checks dependencies."""

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any

from redis.asyncio import Redis
from starlette.responses import JSONResponse

if TYPE_CHECKING:  # SQLAlchemy is imported by the services with a database, not the gateway's
    from sqlalchemy.ext.asyncio import AsyncEngine

Check = Callable[[], Awaitable[Any]]
CHECK_TIMEOUT_SECONDS = 2.0


def postgres_check(engine: "AsyncEngine") -> Check:
    from sqlalchemy import text

    async def check() -> None:
        async with engine.connect() as conn:
            await conn.execute(text("SELECT 1"))

    return check


def redis_check(redis: Redis) -> Check:
    async def check() -> None:
        await redis.ping()

    return check


async def _run(check: Check) -> dict[str, Any]:
    try:
        detail = await asyncio.wait_for(check(), CHECK_TIMEOUT_SECONDS)
    except Exception as exc:
        return {"status": "fail", "error": f"{type(exc).__name__}: {exc}"[:300]}
    return {"status": "ok", **(detail or {})}


async def readiness(checks: Mapping[str, Check]) -> JSONResponse:
    """Run every check concurrently; 503 if any fails."""
    results = await asyncio.gather(*(_run(check) for check in checks.values()))
    report = dict(zip(checks, results, strict=True))
    ready = all(r["status"] == "ok" for r in report.values())
    return JSONResponse(
        {"status": "ok" if ready else "unavailable", "checks": report},
        status_code=200 if ready else 503,
    )
