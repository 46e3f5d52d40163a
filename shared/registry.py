"""The service registry: the one list of the system's services and what the rest of the system
needs to know about each.

The gateway's routing and public endpoints, the combined OpenAPI document, readiness, the
migrations (schemas and roles), the ARQ queue names, the purge fan-out and the tests that keep
the Procfile and docker compose consistent all read this list. Adding a service is one entry
here plus its package under ``services/``.
"""

import os
from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Service:
    """One service of the system.

    ``prefixes`` are the first path segments the gateway routes to it; ``public`` the (method,
    path) pairs reachable without a token. A service with a ``schema`` owns that Postgres schema
    and logs in as role ``pai_<name>``. ``purges``: it holds user data and must report back when
    a deleted user's data is gone. ``worker``: it runs an ARQ worker on its own queue.
    """

    name: str
    port: int
    prefixes: tuple[str, ...] = ()
    public: frozenset[tuple[str, str]] = field(default_factory=frozenset)
    schema: str | None = None
    worker: bool = False
    purges: bool = False
    # What answers 200 once the process serves (ours: /healthz; llama.cpp's server: its models).
    health_path: str = "/healthz"

    @property
    def role(self) -> str:
        return f"pai_{self.name}"

    @property
    def queue(self) -> str | None:
        return f"pai:{self.name}" if self.worker else None

    @property
    def url_setting(self) -> str:
        """The environment variable with this service's internal base URL."""
        return f"PAI_{self.name.upper()}_URL"

    @property
    def port_setting(self) -> str:
        """The environment variable with the port ``make run`` gives it."""
        return f"PAI_{self.name.upper()}_PORT"

    @property
    def database_url_setting(self) -> str:
        return f"PAI_{self.name.upper()}_DATABASE_URL"

    def url(self, environ: Mapping[str, str] | None = None) -> str:
        """Its internal base URL: the URL setting, else loopback at its default port."""
        environ = os.environ if environ is None else environ
        return environ.get(self.url_setting, f"http://127.0.0.1:{self.port}").rstrip("/")


SERVICES: tuple[Service, ...] = (
    Service(
        "auth",
        8001,
        prefixes=("auth", "admin"),
        public=frozenset(
            {
                ("POST", "/auth/register"),
                ("POST", "/auth/token"),
                ("POST", "/auth/refresh"),
                ("POST", "/auth/logout"),
                ("GET", "/auth/.well-known/jwks.json"),
            }
        ),
        schema="auth",
        worker=True,
    ),
    Service("documents", 8002, prefixes=("documents",), schema="documents", worker=True, purges=True),
    Service(
        "mail",
        8003,
        prefixes=("mail",),
        public=frozenset({("GET", "/mail/oauth/callback")}),
        schema="mail",
        worker=True,
        purges=True,
    ),
    Service(
        "assistant",
        8004,
        prefixes=("queries", "conversations"),
        schema="assistant",
        worker=True,
        purges=True,
    ),
    # The local embedding model, loaded once for every process (OpenAI-compatible
    # POST /v1/embeddings). Internal only: no gateway prefix, no data.
    Service("embeddings", 8005),
    # The local language model: a llama.cpp server (OpenAI-compatible /v1/chat/completions)
    # that the assistant asks. Internal only; not our code, so no health route of ours.
    Service("llm", 8006, health_path="/v1/models"),
)

BY_NAME: Mapping[str, Service] = {service.name: service for service in SERVICES}


def health_path(name: str) -> str:
    """Where process ``name`` (a service, or the gateway) answers once it serves."""
    return BY_NAME[name].health_path if name in BY_NAME else "/healthz"


# Services behind the gateway (those with public path prefixes).
ROUTED: tuple[Service, ...] = tuple(service for service in SERVICES if service.prefixes)
# Services with a Postgres schema of their own, in migration order.
WITH_SCHEMA: tuple[Service, ...] = tuple(service for service in SERVICES if service.schema)
QUEUES: Mapping[str, str] = {service.name: service.queue for service in SERVICES if service.queue}
# Services that hold user data and must purge it when a user is deleted.
PURGE_SERVICES: tuple[str, ...] = tuple(service.name for service in SERVICES if service.purges)
