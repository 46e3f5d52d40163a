"""HTTP routes of the documents service: thin wrappers over :mod:`services.documents.service`."""

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import FileResponse

from services.documents.models import Category, Document, Status
from services.documents.schemas import DocumentOut, DocumentPage, DocumentUpdate
from services.documents.service import DocumentsService
from shared.deps import Offset, Timestamp, UserTx
from shared.middleware import USER_CONTENT_HEADERS
from shared.passages import PassageList


def get_service(request: Request) -> DocumentsService:
    return request.app.state.documents


Service = Annotated[DocumentsService, Depends(get_service)]

router = APIRouter(prefix="/documents", tags=["documents"])


@router.post(
    "",
    status_code=202,
    response_model=DocumentOut,
    openapi_extra={
        "requestBody": {
            "content": {
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "required": ["file"],
                        "properties": {
                            "file": {"type": "string", "format": "binary"},
                            "title": {"type": "string"},
                            "description": {"type": "string"},
                        },
                    }
                }
            },
            "required": True,
        },
    },
)
async def upload(request: Request, tx: UserTx, service: Service) -> Document:
    """Multipart upload (``file``, optional ``title`` and ``description``), streamed to disk."""
    declared = request.headers.get("content-length", "")
    return await service.upload(
        tx,
        request.stream(),
        content_type=request.headers.get("content-type", ""),
        content_length=int(declared) if declared.isdigit() else None,
    )


@router.get("", response_model=DocumentPage)
async def list_documents(
    tx: UserTx,
    service: Service,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    offset: Offset = 0,
    q: Annotated[str | None, Query(max_length=200)] = None,
    category: Category | None = None,
    status: Status | None = None,
    id: Annotated[list[uuid.UUID] | None, Query(max_length=200, description="only these documents")] = None,
) -> dict:
    items, total = await service.list_page(
        tx, limit=limit, offset=offset, q=q, category=category, status=status, ids=id
    )
    return {"items": items, "total": total}


@router.get("/search", response_model=PassageList)
async def search(
    tx: UserTx,
    service: Service,
    q: Annotated[str, Query(min_length=1, max_length=1000)],
    k: Annotated[int, Query(ge=1, le=100)] = 10,
    document_id: Annotated[list[uuid.UUID] | None, Query(max_length=100)] = None,
    category: Category | None = None,
    after: Annotated[Timestamp | None, Query(description="uploaded at or after")] = None,
    before: Annotated[Timestamp | None, Query(description="uploaded before")] = None,
) -> dict:
    """Hybrid (BM25 + vector) search in the caller's documents, as passages."""
    results = await service.search(
        tx, q, k=k, document_ids=document_id or (), category=category, after=after, before=before
    )
    return {"results": results}


@router.get("/{document_id}", response_model=DocumentOut)
async def get_document(document_id: uuid.UUID, tx: UserTx, service: Service) -> Document:
    return await service.get(tx, document_id)


@router.get("/{document_id}/content")
async def get_content(document_id: uuid.UUID, tx: UserTx, service: Service) -> FileResponse:
    document = await service.get(tx, document_id)
    return FileResponse(
        service.content_path(document),
        media_type=document.mime_type,
        filename=document.filename,
        headers=USER_CONTENT_HEADERS,
    )


@router.get("/{document_id}/text")
async def get_text(document_id: uuid.UUID, tx: UserTx, service: Service) -> FileResponse:
    """The text ingestion extracted from the file (a DOCX's, an email's, an HTML page's words):
    every search passage is an exact substring of it."""
    document = await service.get(tx, document_id)
    return FileResponse(
        service.text_path(document), media_type="text/plain; charset=utf-8", headers=USER_CONTENT_HEADERS
    )


@router.patch("/{document_id}", response_model=DocumentOut)
async def update_document(
    document_id: uuid.UUID, body: DocumentUpdate, tx: UserTx, service: Service
) -> Document:
    return await service.update(tx, document_id, body)


@router.delete("/{document_id}", status_code=204)
async def delete_document(document_id: uuid.UUID, tx: UserTx, service: Service) -> Response:
    await service.delete(tx, document_id)
    return Response(status_code=204)


@router.post("/{document_id}/reindex", status_code=202, response_model=DocumentOut)
async def reindex(document_id: uuid.UUID, tx: UserTx, service: Service) -> Document:
    return await service.reindex(tx, document_id)
