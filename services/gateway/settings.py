"""Settings of the gateway (all ``PAI_``-prefixed environment variables)."""

from functools import lru_cache

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
    openapi_cache_seconds: float = 60.0
    # The gateway is the edge: trust no X-Forwarded-For unless behind a known proxy.
    forwarded_allow_ips: str = ""


@lru_cache
def get_settings() -> GatewaySettings:
    return GatewaySettings()
