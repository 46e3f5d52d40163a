"""HTTP routes of the auth service: thin wrappers over :mod:`services.auth.service`."""

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Form, Query, Request, Response

from services.auth.models import User
from services.auth.schemas import (
    AdminUserCreate,
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
from services.auth.service import AuthService
from shared.deps import CurrentPrincipal, Session
from shared.errors import ApiError


def get_service(request: Request) -> AuthService:
    return request.app.state.auth_service


Service = Annotated[AuthService, Depends(get_service)]


async def current_user(principal: CurrentPrincipal, session: Session, service: Service) -> User:
    return await service.get_active_user(session, principal.user_id)


async def current_admin(user: Annotated[User, Depends(current_user)]) -> User:
    """Checks the database, not just the token's role, so a demotion applies at once."""
    if not user.is_admin:
        raise ApiError(403, "forbidden", "Admin role required")
    return user


CurrentUser = Annotated[User, Depends(current_user)]
CurrentAdmin = Annotated[User, Depends(current_admin)]
Limit = Annotated[int, Query(ge=1, le=200)]
Offset = Annotated[int, Query(ge=0)]

router = APIRouter(prefix="/auth", tags=["auth"])
admin_router = APIRouter(prefix="/admin", tags=["admin"])


@router.get("/.well-known/jwks.json")
async def jwks(request: Request) -> dict:
    return request.app.state.keyring.jwks()


@router.post("/register", status_code=201, response_model=UserOut)
async def register(body: RegisterRequest, session: Session, service: Service) -> User:
    return await service.register(session, body)


@router.post("/token", response_model=TokenPair)
async def token(
    request: Request,
    username: Annotated[str, Form(min_length=1, max_length=320)],
    password: Annotated[str, Form(min_length=1, max_length=1024)],
    session: Session,
    service: Service,
) -> dict:
    client_ip = request.client.host if request.client else "unknown"
    return await service.login(session, username, password, client_ip)


@router.post("/refresh", response_model=TokenPair)
async def refresh(body: RefreshRequest, session: Session, service: Service) -> dict:
    return await service.refresh(session, body.refresh_token)


@router.post("/logout", status_code=204)
async def logout(body: RefreshRequest, session: Session, service: Service) -> Response:
    await service.logout(session, body.refresh_token)
    return Response(status_code=204)


@router.get("/me", response_model=UserOut)
async def me(user: CurrentUser) -> User:
    return user


@router.patch("/me", response_model=UserOut)
async def update_me(body: UpdateMeRequest, user: CurrentUser, session: Session, service: Service) -> User:
    return await service.update_profile(session, user, email=body.email, username=body.username)


@router.post("/me/password", status_code=204)
async def change_password(
    body: PasswordChangeRequest,
    user: CurrentUser,
    principal: CurrentPrincipal,
    session: Session,
    service: Service,
) -> Response:
    await service.change_password(
        session, user, body.current_password, body.new_password, principal.session_id
    )
    return Response(status_code=204)


@admin_router.get("/users", response_model=UserPage)
async def list_users(
    admin: CurrentAdmin,
    session: Session,
    service: Service,
    limit: Limit = 50,
    offset: Offset = 0,
    q: Annotated[str | None, Query(max_length=100)] = None,
) -> dict:
    users, total = await service.list_users(session, limit=limit, offset=offset, q=q)
    return {"items": users, "total": total}


@admin_router.post("/users", status_code=201, response_model=UserOut)
async def create_user(body: AdminUserCreate, admin: CurrentAdmin, session: Session, service: Service) -> User:
    return await service.admin_create_user(session, admin.id, body)


@admin_router.get("/users/{user_id}", response_model=UserOut)
async def get_user(user_id: uuid.UUID, admin: CurrentAdmin, session: Session, service: Service) -> User:
    return await service.get_user(session, user_id)


@admin_router.patch("/users/{user_id}", response_model=UserOut)
async def update_user(
    user_id: uuid.UUID,
    body: AdminUserUpdate,
    admin: CurrentAdmin,
    session: Session,
    service: Service,
) -> User:
    return await service.admin_update_user(session, admin.id, user_id, body)


@admin_router.delete("/users/{user_id}", status_code=204)
async def delete_user(
    user_id: uuid.UUID, admin: CurrentAdmin, session: Session, service: Service
) -> Response:
    await service.admin_delete_user(session, admin.id, user_id)
    return Response(status_code=204)


@admin_router.get("/audit", response_model=AuditPage)
async def audit(
    admin: CurrentAdmin, session: Session, service: Service, limit: Limit = 50, offset: Offset = 0
) -> dict:
    entries, total = await service.list_audit(session, limit=limit, offset=offset)
    return {"items": entries, "total": total}
