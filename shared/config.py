"""Settings read from the environment (prefix ``PAI_``); defaults suit ``make run``.

Every service has its own settings class built on :class:`CommonSettings`, so a
service only sees the knobs it uses. The README lists every setting.
"""

from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_ADMIN_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/pai"


class CommonSettings(BaseSettings):
    """Settings every process needs: where Redis is and how to check tokens."""

    model_config = SettingsConfigDict(env_prefix="PAI_", extra="ignore", populate_by_name=True)

    log_level: str = "INFO"
    redis_url: str = "redis://127.0.0.1:6379/0"

    # Who signs tokens and who they are for; checked on every request.
    jwt_issuer: str = "pai-auth"
    jwt_audience: str = "pai-api"
    jwks_url: str = "http://127.0.0.1:8001/auth/.well-known/jwks.json"
    # An unknown `kid` triggers a JWKS refetch at most this often (stops kid-spraying).
    jwks_min_refresh_seconds: float = 5.0
    # Longest an access token can live; revocation markers are kept this long.
    access_token_ttl_seconds: int = 900

    # uvicorn trusts X-Forwarded-For only from these addresses (the gateway).
    forwarded_allow_ips: str = "127.0.0.1"
    # Every HTTP server: a request's line and headers must arrive within this time (408) and
    # stay within this size (431), counted before they are parsed (shared/http_protocol.py).
    header_timeout_seconds: float = 10.0
    max_header_bytes: int = 32 * 1024

    # The admin connection, used by migrations only; services use their own role.
    database_url: str = DEFAULT_ADMIN_DATABASE_URL


def service_database_url(admin_url: str, role: str, explicit: str | None) -> str:
    """A service's DSN: the explicit one if set, else the admin DSN with the service role."""
    if explicit:
        return explicit
    from sqlalchemy.engine import make_url  # only services with a database: the gateway has none

    url = make_url(admin_url).set(username=role, password=None)
    return url.render_as_string(hide_password=False)
