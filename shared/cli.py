"""Process entry points shared by every service's ``__main__``: the web server and the worker.

A service's ARQ worker runs as a process of its own (``worker``: compose, where workers scale
apart from the API) or inside the API process (``serve --with-worker``: ``make run``, where one
Python process per service instead of two saves about 100-200 MB each; see README →
Performance → Memory). Either way it is the same ARQ worker on the same queue.
"""

import argparse
import asyncio
import contextlib
import importlib
import os
import signal
from collections.abc import AsyncIterator
from typing import Any

import structlog
import uvicorn
from arq.worker import check_health, create_worker, run_worker
from fastapi import FastAPI

from shared.config import CommonSettings
from shared.http_protocol import GuardedHttpToolsProtocol

log = structlog.get_logger(__name__)

SERVER_KEEPALIVE_SECONDS = 75
UPSTREAM_KEEPALIVE_SECONDS = 60  # the gateway's pool: shorter than the services keep theirs


def serve(app: FastAPI, settings: CommonSettings, host: str, port: int) -> None:
    """Run one uvicorn process. X-Forwarded-For is trusted only from ``forwarded_allow_ips``
    (the gateway, for services); empty (the gateway's default) trusts nobody."""
    GuardedHttpToolsProtocol.head_timeout = settings.header_timeout_seconds
    GuardedHttpToolsProtocol.max_head_bytes = settings.max_header_bytes
    uvicorn.run(
        app,
        http=GuardedHttpToolsProtocol,
        host=host,
        port=port,
        proxy_headers=bool(settings.forwarded_allow_ips),
        forwarded_allow_ips=settings.forwarded_allow_ips or None,
        log_config=None,  # our JSON logging is configured by the app factory
        access_log=False,
        server_header=False,
        # Idle keep-alive connections live longer than the gateway's pool keeps them
        # (UPSTREAM_KEEPALIVE_SECONDS), so the gateway never sends on one a service just closed.
        timeout_keep_alive=SERVER_KEEPALIVE_SECONDS,
    )


def service_parser(
    service: str, port: int, *, host: str = "127.0.0.1", worker: bool = True
) -> tuple[argparse.ArgumentParser, argparse._SubParsersAction]:
    parser = argparse.ArgumentParser(prog=f"python -m services.{service}")
    commands = parser.add_subparsers(dest="command", required=True)
    serve_cmd = commands.add_parser("serve", help="run the HTTP API")
    serve_cmd.add_argument("--host", default=host)
    serve_cmd.add_argument("--port", type=int, default=port)
    if worker:
        serve_cmd.add_argument(
            "--with-worker",
            action="store_true",
            help="also run the service's ARQ worker in this process (make run)",
        )
        worker_cmd = commands.add_parser("worker", help="run the ARQ worker")
        worker_cmd.add_argument(
            "--check", action="store_true", help="exit 0 if a worker reported healthy recently (healthcheck)"
        )
    return parser, commands


def run_common(service: str, args: argparse.Namespace, settings: CommonSettings) -> bool:
    """Handle ``serve`` and ``worker``; False when the command is service-specific."""
    if args.command == "serve":
        app = importlib.import_module(f"services.{service}.app").create_app()
        if getattr(args, "with_worker", False):
            run_worker_alongside(app, _worker_settings(service))
        serve(app, settings, args.host, args.port)
        return True
    if args.command == "worker":
        if args.check:
            raise SystemExit(check_health(_worker_settings(service)))
        run_worker(_worker_settings(service))
        return True
    return False


def _worker_settings(service: str) -> dict[str, Any]:
    return importlib.import_module(f"services.{service}.tasks").worker_settings()


def run_worker_alongside(app: FastAPI, worker_settings: dict[str, Any]) -> None:
    """Run an ARQ worker for the app's lifetime, inside its lifespan: it starts after the app's
    own start-up and stops (ongoing jobs cancelled, to be retried, as on a worker's SIGTERM)
    before the app's shutdown. A worker that dies on its own takes the process down with it,
    so the supervisor restarts both rather than leaving an API whose jobs nobody runs."""
    app_lifespan = app.router.lifespan_context

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[Any]:
        async with app_lifespan(app) as state, _running_worker(worker_settings):
            yield state

    app.router.lifespan_context = lifespan


@contextlib.asynccontextmanager
async def _running_worker(worker_settings: dict[str, Any]) -> AsyncIterator[None]:
    worker = create_worker(worker_settings, handle_signals=False)
    task = asyncio.create_task(worker.async_run())
    stopping = False

    def exit_if_worker_died(finished: asyncio.Task) -> None:
        error = None if finished.cancelled() else finished.exception()
        if stopping:
            return
        log.error("worker_died_stopping_process", exc_info=error)
        os.kill(os.getpid(), signal.SIGTERM)  # uvicorn's graceful shutdown, then the supervisor

    task.add_done_callback(exit_if_worker_died)
    try:
        yield
    finally:
        stopping = True
        await worker.close()
        await asyncio.wait({task})  # ended by close(), or earlier by a failure already logged
