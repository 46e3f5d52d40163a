"""Process entry points shared by every service's ``__main__``: the web server and the worker."""

import argparse
import importlib

import uvicorn
from arq.worker import check_health, run_worker

from shared.config import CommonSettings
from shared.http_protocol import GuardedHttpToolsProtocol

SERVER_KEEPALIVE_SECONDS = 75
UPSTREAM_KEEPALIVE_SECONDS = 60  # the gateway's pool: shorter than the services keep theirs


def serve(factory: str, settings: CommonSettings, host: str, port: int) -> None:
    """Run one uvicorn process. X-Forwarded-For is trusted only from ``forwarded_allow_ips``
    (the gateway, for services); empty (the gateway's default) trusts nobody."""
    GuardedHttpToolsProtocol.head_timeout = settings.header_timeout_seconds
    GuardedHttpToolsProtocol.max_head_bytes = settings.max_header_bytes
    uvicorn.run(
        factory,
        http=GuardedHttpToolsProtocol,
        factory=True,
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
        worker_cmd = commands.add_parser("worker", help="run the ARQ worker")
        worker_cmd.add_argument(
            "--check", action="store_true", help="exit 0 if a worker reported healthy recently (healthcheck)"
        )
    return parser, commands


def run_common(service: str, args: argparse.Namespace, settings: CommonSettings) -> bool:
    """Handle ``serve`` and ``worker``; False when the command is service-specific."""
    if args.command == "serve":
        serve(f"services.{service}.app:create_app", settings, args.host, args.port)
        return True
    if args.command == "worker":
        tasks = importlib.import_module(f"services.{service}.tasks")
        if args.check:
            raise SystemExit(check_health(tasks.worker_settings()))
        run_worker(tasks.worker_settings())
        return True
    return False
