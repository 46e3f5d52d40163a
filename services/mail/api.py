"""HTTP routes of the mail service: thin wrappers over :mod:`services.mail.service`."""

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import FileResponse, RedirectResponse

from services.mail.classification import EmailType
from services.mail.schemas import (
    AccountList,
    AccountOut,
    AccountUpdate,
    ConnectResponse,
    EmailOut,
    EmailPage,
    SyncOut,
)
from services.mail.service import EmailFilters, MailService
from shared.deps import Offset, Timestamp, UserTx
from shared.middleware import USER_CONTENT_HEADERS
from shared.passages import PassageList


def get_service(request: Request) -> MailService:
    return request.app.state.mail


Service = Annotated[MailService, Depends(get_service)]

router = APIRouter(prefix="/mail", tags=["mail"])


@router.post("/accounts/gmail/connect", response_model=ConnectResponse)
async def connect_gmail(tx: UserTx, service: Service) -> dict:
    """The Google consent URL to send the browser to (PKCE, offline access, 10-minute state)."""
    return {"authorization_url": await service.connect(tx)}


@router.get("/oauth/callback", include_in_schema=True, status_code=302)
async def oauth_callback(
    service: Service,
    code: Annotated[str | None, Query(max_length=2048)] = None,
    state: Annotated[str | None, Query(max_length=512)] = None,
    error: Annotated[str | None, Query(max_length=200)] = None,
) -> RedirectResponse:
    """Public: Google sends the browser here; it is redirected on to the front end."""
    return RedirectResponse(await service.callback(code, state, error), status_code=302)


@router.get("/accounts", response_model=AccountList)
async def list_accounts(tx: UserTx, service: Service) -> dict:
    return {"items": await service.list_accounts(tx)}


@router.patch("/accounts/{account_id}", response_model=AccountOut)
async def update_account(account_id: uuid.UUID, body: AccountUpdate, tx: UserTx, service: Service) -> dict:
    return await service.update_account(tx, account_id, body.sync_enabled)


@router.delete("/accounts/{account_id}", status_code=204)
async def delete_account(account_id: uuid.UUID, tx: UserTx, service: Service) -> Response:
    await service.delete_account(tx, account_id)
    return Response(status_code=204)


@router.post("/accounts/{account_id}/sync", status_code=202, response_model=SyncOut)
async def request_sync(account_id: uuid.UUID, tx: UserTx, service: Service):
    return await service.request_sync(tx, account_id)


@router.get("/accounts/{account_id}/sync", response_model=SyncOut)
async def sync_status(account_id: uuid.UUID, tx: UserTx, service: Service):
    return await service.last_sync(tx, account_id)


@router.get("/emails", response_model=EmailPage)
async def list_emails(
    tx: UserTx,
    service: Service,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    offset: Offset = 0,
    account_id: uuid.UUID | None = None,
    type: EmailType | None = None,
    sender: Annotated[str | None, Query(max_length=320)] = None,
    label: Annotated[str | None, Query(max_length=100)] = None,
    is_read: bool | None = None,
    after: Timestamp | None = None,
    before: Timestamp | None = None,
    q: Annotated[str | None, Query(max_length=200)] = None,
    id: Annotated[list[uuid.UUID] | None, Query(max_length=200, description="only these emails")] = None,
) -> dict:
    filters = EmailFilters(account_id, type, sender, label, is_read, after, before, q, ids=id)
    items, total = await service.list_emails(tx, filters, limit=limit, offset=offset)
    return {"items": items, "total": total}


@router.get("/emails/{email_id}", response_model=EmailOut)
async def get_email(email_id: uuid.UUID, tx: UserTx, service: Service) -> dict:
    return await service.get_email(tx, email_id)


@router.get("/emails/{email_id}/attachments/{attachment_id}")
async def get_attachment(
    email_id: uuid.UUID, attachment_id: uuid.UUID, tx: UserTx, service: Service
) -> FileResponse:
    attachment, path = await service.attachment(tx, email_id, attachment_id)
    return FileResponse(
        path, media_type=attachment.mime_type, filename=attachment.filename, headers=USER_CONTENT_HEADERS
    )


@router.get("/search", response_model=PassageList)
async def search(
    tx: UserTx,
    service: Service,
    q: Annotated[str, Query(min_length=1, max_length=1000)],
    k: Annotated[int, Query(ge=1, le=50)] = 10,
    account_id: Annotated[list[uuid.UUID] | None, Query(max_length=100)] = None,
    type: EmailType | None = None,
    after: Annotated[Timestamp | None, Query(description="sent at or after")] = None,
    before: Annotated[Timestamp | None, Query(description="sent before")] = None,
) -> dict:
    results = await service.search(
        tx, q, k=k, account_ids=account_id or (), email_type=type, after=after, before=before
    )
    return {"results": results}
