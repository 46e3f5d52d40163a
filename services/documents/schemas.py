"""Request and response bodies of the documents service."""

from pydantic import BaseModel


class DocumentPage(BaseModel):
    items: list[dict]
    total: int
