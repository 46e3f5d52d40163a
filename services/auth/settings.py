"""Settings of the auth service (all ``PAI_``-prefixed environment variables)."""

from functools import lru_cache
from pathlib import Path

from pydantic import Field

from shared.config import CommonSettings, service_database_url


class AuthSettings(CommonSettings):
    auth_database_url: str | None = Field(None, validation_alias="PAI_AUTH_DATABASE_URL")

    # Ed25519 signing key: inline PEM wins over the file. `make run` creates the file.
    jwt_private_key: str | None = None
    jwt_private_key_file: Path = Path("data/keys/jwt_ed25519.pem")
    # Public keys of retired signing keys, still served in the JWKS until their tokens expire.
    jwt_previous_public_key_files: list[Path] = []

    refresh_token_ttl_days: int = 30
    # The address browsers use (the gateway's public URL): cookie refreshes must come from it
    # (the Origin header, against cross-site requests), and its scheme decides Secure cookies.
    public_url: str = "http://localhost:8000"
    registration_open: bool = True
    # Failed sign-ins per account in the window; while spent, even the right password waits.
    login_max_failures: int = 5
    login_failure_window_seconds: int = 900
    # Per client IP (`limits` syntax): sign-in attempts (and current-password checks), and
    # registrations. Each costs a password hash, far more CPU than any other request.
    login_ip_rate_limit: str = "30/minute"
    register_ip_rate_limit: str = "10/minute"
    # Password hashes computed at once (each takes a core for ~50 ms); the rest wait their turn
    # without holding threads, so other requests keep a core.
    password_hash_concurrency: int = Field(1, ge=1)
    # Hashing threads run this much nicer than the rest (Linux), so requests keep their CPU.
    password_hash_niceness: int = Field(10, ge=0, le=19)
    # How often the worker re-enqueues unfinished purges from the outbox (seconds; divides a minute).
    recover_interval_seconds: int = Field(60, ge=1, le=60)

    @property
    def service_database_url(self) -> str:
        return service_database_url(self.database_url, "pai_auth", self.auth_database_url)


@lru_cache
def get_settings() -> AuthSettings:
    return AuthSettings()
