"""Documents logic. Uploads and search arrive with the documents issue; until then a user
has no documents, and this says so rather than pretending."""

import uuid


async def list_documents(owner_id: uuid.UUID) -> tuple[list[dict], int]:
    return [], 0
