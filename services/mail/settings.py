"""Settings of the mail service and its worker (``PAI_``-prefixed, except the Weaviate pair
of :class:`VectorSettings`)."""

from functools import lru_cache
from pathlib import Path

from pydantic import Field, SecretStr

from services.mail.crypto import TokenCipher, parse_keys
from shared.config import service_database_url
from shared.text.isolation import ExtractionSettings
from shared.vectors import VectorSettings

GMAIL_READONLY = "https://www.googleapis.com/auth/gmail.readonly"


class MailSettings(VectorSettings, ExtractionSettings):
    mail_database_url: str | None = Field(None, validation_alias="PAI_MAIL_DATABASE_URL")

    # Attachments live in <data_dir>/mail/<user>/<email>/ (data_dir: see VectorSettings).

    # Google OAuth client (console.cloud.google.com → Credentials). Connecting an account
    # answers 503 until both are set.
    google_client_id: str | None = None
    google_client_secret: SecretStr | None = None
    # The gateway's public callback address, registered as a redirect URI at Google.
    oauth_redirect_uri: str = "http://localhost:8000/mail/oauth/callback"
    # Where the browser lands after the consent screen (?mail_connected=… or ?mail_error=…).
    frontend_url: str = "http://localhost:8000/inbox"  # the web app's Mail page
    oauth_state_ttl_seconds: int = 600
    oauth_scopes: list[str] = [GMAIL_READONLY, "openid", "email"]

    # Google's endpoints; tests point them at a local stand-in.
    google_auth_url: str = "https://accounts.google.com/o/oauth2/v2/auth"
    google_token_url: str = "https://oauth2.googleapis.com/token"  # noqa: S105 - a URL
    google_revoke_url: str = "https://oauth2.googleapis.com/revoke"
    google_userinfo_url: str = "https://openidconnect.googleapis.com/v1/userinfo"
    gmail_discovery_url: str = "https://gmail.googleapis.com/$discovery/rest?version=v1"

    # Fernet keys for OAuth tokens at rest, comma-separated, current first. Rotation: put a new
    # key first; every token is re-encrypted under it at its next refresh (hourly while the
    # account syncs); drop the old key after that. Read from this setting or, when unset,
    # from the file `make run` creates (`python -m services.mail keygen`).
    mail_token_keys: SecretStr | None = None
    mail_token_keys_file: Path = Path("data/keys/mail_token_keys")

    # Sync: what a full sync lists, how much, how fast.
    sync_query: str = "-in:spam -in:trash"
    sync_max_messages: int = 5000
    sync_interval_minutes: int = 15
    sync_concurrency: int = 10
    # Gmail allows 250 quota units per user per second; stay a little below it.
    gmail_quota_units_per_second: float = 240.0
    gmail_max_retries: int = 6
    gmail_backoff_max_seconds: float = 32.0
    gmail_timeout_seconds: float = 30.0
    sync_timeout_seconds: int = 3600
    recover_interval_seconds: int = 60

    # Attachments larger than this are listed but not downloaded for indexing.
    attachment_index_max_bytes: int = 10 * 1024 * 1024
    chunk_chars: int = 800
    chunk_overlap_chars: int = 100

    @property
    def service_database_url(self) -> str:
        return service_database_url(self.database_url, "pai_mail", self.mail_database_url)

    @property
    def attachments_dir(self) -> Path:
        return self.data_dir / "mail"

    @property
    def google_configured(self) -> bool:
        return bool(self.google_client_id and self.google_client_secret)

    def token_cipher(self) -> TokenCipher:
        """The cipher for stored tokens. Raises ``RuntimeError`` if no key is configured:
        the service must not start and store tokens it could not read back."""
        if self.mail_token_keys is not None:
            return TokenCipher(parse_keys(self.mail_token_keys.get_secret_value()))
        try:
            setting = self.mail_token_keys_file.read_text(encoding="utf-8").strip()
        except FileNotFoundError:
            raise RuntimeError(
                "no token encryption key: set PAI_MAIL_TOKEN_KEYS or run "
                f"`python -m services.mail keygen` to create {self.mail_token_keys_file}"
            ) from None
        return TokenCipher(parse_keys(setting))


@lru_cache
def get_settings() -> MailSettings:
    return MailSettings()
