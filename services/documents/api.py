"""HTTP routes of the documents service."""

from fastapi import APIRouter

from services.documents import service
from services.documents.schemas import DocumentPage
from shared.deps import CurrentPrincipal

router = APIRouter(prefix="/documents", tags=["documents"])


@router.get("", response_model=DocumentPage)
async def list_documents(principal: CurrentPrincipal) -> dict:
    items, total = await service.list_documents(principal.user_id)
    return {"items": items, "total": total}
