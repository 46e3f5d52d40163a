"""Tables of the ``documents`` schema (none yet: the documents issue adds them)."""

from sqlalchemy import MetaData
from sqlmodel import SQLModel

SCHEMA = "documents"
metadata = MetaData(schema=SCHEMA)


class DocumentsModel(SQLModel):
    """Base of this schema\'s tables: they all land in ``metadata`` (schema ``documents``)."""

    metadata = metadata
