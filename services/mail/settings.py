"""Settings of the mail service (all ``PAI_``-prefixed environment variables)."""

from functools import lru_cache

from pydantic import Field

from shared.config import CommonSettings, service_database_url


class MailSettings(CommonSettings):
    mail_database_url: str | None = Field(None, validation_alias="PAI_MAIL_DATABASE_URL")

    @property
    def service_database_url(self) -> str:
        return service_database_url(self.database_url, "pai_mail", self.mail_database_url)


@lru_cache
def get_settings() -> MailSettings:
    return MailSettings()
