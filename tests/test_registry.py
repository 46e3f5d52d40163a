"""The service registry agrees with what starts the services: the Procfile (``make run``,
supervised) and docker compose, and with the gateway's routing."""

import importlib.util
from pathlib import Path

import yaml

from services.gateway.schemas import PUBLIC_ENDPOINTS, ROUTES
from shared.registry import PURGE_SERVICES, QUEUES, SERVICES, WITH_SCHEMA

ROOT = Path(__file__).resolve().parent.parent


def procfile() -> dict[str, str]:
    spec = importlib.util.spec_from_file_location("supervise", ROOT / "infra" / "supervise.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.parse_procfile(ROOT / "Procfile")


def test_every_registered_service_is_started_by_make_run_and_compose():
    processes = procfile()
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    for service in SERVICES:
        command = processes[service.name]
        serve = f"python -m services.{service.name} serve"
        # make run: a service's worker runs inside its API process; compose: a process of its own
        assert command.startswith(f"{serve} --with-worker " if service.worker else f"{serve} "), command
        assert f"${{{service.port_setting}:-{service.port}}}" in command
        assert service.name in compose
        if service.worker:
            assert compose[f"{service.name}-worker"]["command"] == [
                "python",
                "-m",
                f"services.{service.name}",
                "worker",
            ]
    assert set(processes) == {"gateway"} | {s.name for s in SERVICES}


def test_gateway_routes_and_purges_come_from_the_registry():
    assert {prefix: s.name for s in SERVICES for prefix in s.prefixes} == ROUTES
    assert ("GET", "/mail/oauth/callback") in PUBLIC_ENDPOINTS
    assert ("POST", "/auth/token") in PUBLIC_ENDPOINTS
    assert ROUTES["queries"] == ROUTES["conversations"] == "assistant"
    assert set(PURGE_SERVICES) == {"documents", "mail", "assistant"}
    assert QUEUES == {
        "auth": "pai:auth",
        "documents": "pai:documents",
        "mail": "pai:mail",
        "assistant": "pai:assistant",
    }
    assert [s.schema for s in WITH_SCHEMA] == ["auth", "documents", "mail", "assistant"]
