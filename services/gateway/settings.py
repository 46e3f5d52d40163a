"""Settings of the gateway (all ``PAI_``-prefixed environment variables)."""

from functools import lru_cache
from pathlib import Path

from shared.config import CommonSettings


class GatewaySettings(CommonSettings):
    """Upstream URLs are not here: each service's ``PAI_<NAME>_URL`` is read through the
    service registry (``shared.registry``)."""

    # Per user (per client IP for anonymous requests); syntax of the `limits` package.
    rate_limit: str = "1200/minute"
    # Requests whose token is refused, per client IP (guessing and replaying tokens).
    refused_token_rate_limit: str = "120/minute"  # noqa: S105 - a rate, not a secret
    upstream_connect_timeout_seconds: float = 5.0
    upstream_timeout_seconds: float = 120.0
    upstream_max_connections: int = 200
    # Each service has its own share of the pool: one slow service cannot take the others' share.
    upstream_max_connections_per_service: int = 100
    # Per client (the user, else the IP): requests in flight at once, streams included.
    max_in_flight_per_client: int = 32
    # Request bodies: a public one (sign-in, registration) is read whole, at most this large,
    # before any upstream connection is taken; any body must keep arriving (no gap longer than
    # the idle timeout) and, after the grace period, at least at the minimum rate. Else 408.
    public_body_max_bytes: int = 64 * 1024
    body_idle_timeout_seconds: float = 15.0
    body_min_bytes_per_second: int = 1024
    body_rate_grace_seconds: float = 10.0
    openapi_cache_seconds: float = 60.0
    # The built browser app (``make run`` builds web/ into it), served at "/".
    web_dist_dir: Path = Path("web/dist")
    # The gateway is the edge: trust no X-Forwarded-For unless behind a known proxy.
    forwarded_allow_ips: str = ""


@lru_cache
def get_settings() -> GatewaySettings:
    return GatewaySettings()
