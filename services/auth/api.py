"""HTTP routes of the auth service: thin wrappers over :mod:`services.auth.service`."""

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Form, Query, Request, Response

from services.auth.models import User
from services.auth.schemas import (
    AdminUserCreate,
    AdminUserOut,
    AdminUserUpdate,
    AuditPage,
    PasswordChangeRequest,
    RefreshRequest,
    RegisterRequest,
    TokenPair,
    UpdateMeRequest,
    UserOut,
    UserPage,
)
from services.auth.service import AdminService, AuthService
from shared.deps import CurrentPrincipal, Offset, Tx
from shared.errors import Forbidden


def get_service(request: Request) -> AuthService:
    return request.app.state.auth_service


def get_admin_service(request: Request) -> AdminService:
    return request.app.state.admin_service


Service = Annotated[AuthService, Depends(get_service)]


def client_ip(request: Request) -> str:
    """The caller's address (the gateway's X-Forwarded-For, trusted from the gateway only)."""
    return request.client.host if request.client else "unknown"


Admin = Annotated[AdminService, Depends(get_admin_service)]


async def current_user(principal: CurrentPrincipal, tx: Tx, service: Service) -> User:
    return await service.get_active_user(tx, principal.user_id)


async def current_admin(user: Annotated[User, Depends(current_user)]) -> User:
    """Checks the database, not just the token's role, so a demotion applies at once."""
    if not user.is_admin:
        raise Forbidden("Admin role required")
    return user


CurrentUser = Annotated[User, Depends(current_user)]
CurrentAdmin = Annotated[User, Depends(current_admin)]
Limit = Annotated[int, Query(ge=1, le=200)]

router = APIRouter(prefix="/auth", tags=["auth"])
admin_router = APIRouter(prefix="/admin", tags=["admin"])


@router.get("/.well-known/jwks.json")
async def jwks(request: Request) -> dict:
    return request.app.state.keyring.jwks()


@router.post("/register", status_code=201, response_model=UserOut)
async def register(request: Request, body: RegisterRequest, tx: Tx, service: Service) -> User:
    return await service.register(tx, body, client_ip(request))


@router.post("/token", response_model=TokenPair)
async def token(
    request: Request,
    username: Annotated[str, Form(min_length=1, max_length=320)],
    password: Annotated[str, Form(min_length=1, max_length=1024)],
    tx: Tx,
    service: Service,
) -> dict:
    return await service.login(tx, username, password, client_ip(request))


@router.post("/refresh", response_model=TokenPair)
async def refresh(body: RefreshRequest, tx: Tx, service: Service) -> dict:
    return await service.refresh(tx, body.refresh_token)


@router.post("/logout", status_code=204)
async def logout(body: RefreshRequest, tx: Tx, service: Service) -> Response:
    await service.logout(tx, body.refresh_token)
    return Response(status_code=204)


@router.get("/me", response_model=UserOut)
async def me(user: CurrentUser) -> User:
    return user


@router.patch("/me", response_model=UserOut)
async def update_me(
    request: Request, body: UpdateMeRequest, user: CurrentUser, tx: Tx, service: Service
) -> User:
    return await service.update_profile(
        tx,
        user,
        email=body.email,
        username=body.username,
        current_password=body.current_password,
        client_ip=client_ip(request),
    )


@router.post("/me/password", status_code=204)
async def change_password(
    request: Request,
    body: PasswordChangeRequest,
    user: CurrentUser,
    principal: CurrentPrincipal,
    tx: Tx,
    service: Service,
) -> Response:
    await service.change_password(
        tx, user, body.current_password, body.new_password, principal.session_id, client_ip(request)
    )
    return Response(status_code=204)


@admin_router.get("/users", response_model=UserPage)
async def list_users(
    admin: CurrentAdmin,
    tx: Tx,
    service: Admin,
    limit: Limit = 50,
    offset: Offset = 0,
    q: Annotated[str | None, Query(max_length=100)] = None,
) -> dict:
    users, total = await service.list_users(tx, limit=limit, offset=offset, q=q)
    return {"items": users, "total": total}


@admin_router.post("/users", status_code=201, response_model=AdminUserOut)
async def create_user(body: AdminUserCreate, admin: CurrentAdmin, tx: Tx, service: Admin) -> User:
    return await service.admin_create_user(tx, admin.id, body)


@admin_router.get("/users/{user_id}", response_model=AdminUserOut)
async def get_user(user_id: uuid.UUID, admin: CurrentAdmin, tx: Tx, service: Admin) -> User:
    return await service.get_user(tx, user_id)


@admin_router.patch("/users/{user_id}", response_model=AdminUserOut)
async def update_user(
    user_id: uuid.UUID,
    body: AdminUserUpdate,
    admin: CurrentAdmin,
    tx: Tx,
    service: Admin,
) -> User:
    return await service.admin_update_user(tx, admin.id, user_id, body)


@admin_router.delete("/users/{user_id}", status_code=204)
async def delete_user(user_id: uuid.UUID, admin: CurrentAdmin, tx: Tx, service: Admin) -> Response:
    await service.admin_delete_user(tx, admin.id, user_id)
    return Response(status_code=204)


@admin_router.get("/audit", response_model=AuditPage)
async def audit(admin: CurrentAdmin, tx: Tx, service: Admin, limit: Limit = 50, offset: Offset = 0) -> dict:
    entries, total = await service.list_audit(tx, limit=limit, offset=offset)
    return {"items": entries, "total": total}
