"""HTTP routes of the auth service: thin wrappers over :mod:`services.auth.service`."""

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Form, Query, Request, Response

from services.auth.cookies import COOKIE, check_origin, clear_cookie, cookie_token, set_cookie, wants_cookie
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


def _answer(request: Request, response: Response, pair: dict, service: AuthService) -> dict:
    """A browser's pair (``X-Refresh-Cookie: 1``): the refresh token goes into the cookie only."""
    if not wants_cookie(request):
        return pair
    settings = service.settings
    set_cookie(response, pair["refresh_token"], settings.refresh_token_ttl_days * 86400, settings.public_url)
    return {**pair, "refresh_token": None}


@router.post("/token", response_model=TokenPair, response_model_exclude_none=True)
async def token(
    request: Request,
    response: Response,
    username: Annotated[str, Form(min_length=1, max_length=320)],
    password: Annotated[str, Form(min_length=1, max_length=1024)],
    tx: Tx,
    service: Service,
) -> dict:
    """Sign in. With ``X-Refresh-Cookie: 1`` (the browser app) the refresh token is set as an
    HttpOnly cookie instead of being returned."""
    pair = await service.login(tx, username, password, client_ip(request))
    return _answer(request, response, pair, service)


def _refresh_token(request: Request, body: RefreshRequest | None, service: AuthService) -> str:
    """The body's token (API clients), else the cookie's, from the app's own origin only."""
    if body is not None:
        return body.refresh_token
    check_origin(request, service.settings.public_url)
    return cookie_token(request)


@router.post("/refresh", response_model=TokenPair, response_model_exclude_none=True)
async def refresh(
    request: Request, response: Response, tx: Tx, service: Service, body: RefreshRequest | None = None
) -> dict:
    """A new pair for a refresh token (spent by this call), from the body or the browser's cookie."""
    pair = await service.refresh(tx, _refresh_token(request, body, service))
    return _answer(request, response, pair, service) if body is None else pair


@router.post("/logout", status_code=204)
async def logout(request: Request, tx: Tx, service: Service, body: RefreshRequest | None = None) -> Response:
    """End the session of a refresh token (the body's, or the browser's cookie, which is cleared)."""
    answer = Response(status_code=204)
    if body is None:
        check_origin(request, service.settings.public_url)
        clear_cookie(answer, service.settings.public_url)
        token = request.cookies.get(COOKIE)
        if token:
            await service.logout(tx, token)
        return answer
    await service.logout(tx, body.refresh_token)
    return answer


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
