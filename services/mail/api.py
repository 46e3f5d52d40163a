"""HTTP routes of the mail service."""

from fastapi import APIRouter

from services.mail import service
from services.mail.schemas import AccountList
from shared.deps import CurrentPrincipal

router = APIRouter(prefix="/mail", tags=["mail"])


@router.get("/accounts", response_model=AccountList)
async def list_accounts(principal: CurrentPrincipal) -> dict:
    return {"items": await service.list_accounts(principal.user_id)}
