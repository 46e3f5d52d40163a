"""Mail logic. Gmail connection and sync arrive with the mail issue; until then a user has
no connected accounts."""

import uuid


async def list_accounts(owner_id: uuid.UUID) -> list[dict]:
    return []
