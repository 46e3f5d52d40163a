"""Request and response bodies of the mail service."""

from pydantic import BaseModel


class AccountList(BaseModel):
    items: list[dict]
