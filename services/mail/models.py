"""Tables of the ``mail`` schema (none yet: the mail issue adds them)."""

from sqlalchemy import MetaData
from sqlmodel import SQLModel

SCHEMA = "mail"
metadata = MetaData(schema=SCHEMA)


class MailModel(SQLModel):
    """Base of this schema\'s tables: they all land in ``metadata`` (schema ``mail``)."""

    metadata = metadata
