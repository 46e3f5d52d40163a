"""Accounts, logins and refresh-token families, through the gateway against real processes."""

import uuid

import bcrypt
import httpx
import pytest
from argon2 import PasswordHasher

from tests.conftest import login


async def test_register_returns_the_user_and_never_an_admin(gateway):
    username = f"reg_{uuid.uuid4().hex[:8]}"
    response = await gateway.post(
        "/auth/register",
        json={
            "email": f"{username}@Example.com",
            "username": username,
            "password": "password123",
            "is_admin": True,
        },
    )
    assert response.status_code == 201
    user = response.json()
    assert set(user) == {"id", "email", "username", "is_admin", "is_active", "created_at"}
    assert uuid.UUID(user["id"])
    assert user["email"] == f"{username}@example.com"
    assert user["is_admin"] is False and user["is_active"] is True
    assert user["created_at"].endswith(("Z", "+00:00"))


@pytest.mark.parametrize("field", ["username", "email"])
async def test_taken_username_or_email_is_409(gateway, new_account, field):
    existing = await new_account()
    fresh = f"other_{uuid.uuid4().hex[:8]}"
    body = {"username": fresh, "email": f"{fresh}@example.com", "password": "password123"}
    body[field] = getattr(existing, field).upper()  # uniqueness ignores case
    response = await gateway.post("/auth/register", json=body)
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "conflict"


@pytest.mark.parametrize(
    "body",
    [
        {"username": "ab", "email": "x@example.com", "password": "password123"},
        {"username": "has space", "email": "x@example.com", "password": "password123"},
        {"username": "a" * 51, "email": "x@example.com", "password": "password123"},
        {"username": "valid_name", "email": "not-an-email", "password": "password123"},
        {"username": "valid_name", "email": "x@example.com", "password": "short"},
        {"username": "valid_name", "email": "x@example.com"},
    ],
)
async def test_invalid_registration_is_422_with_error_envelope(gateway, body):
    response = await gateway.post("/auth/register", json=body)
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "validation_error" and error["message"]


async def test_malformed_json_is_a_clear_4xx(gateway):
    response = await gateway.post(
        "/auth/register", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "validation_error"


async def test_login_by_username_or_email(gateway, new_account):
    account = await new_account()
    for login_name in (account.username, account.email.upper()):
        tokens = await login(gateway, login_name, account.password)
        assert tokens["token_type"] == "bearer"
        assert tokens["expires_in"] == 900
        me = await gateway.get("/auth/me", headers={"Authorization": f"Bearer {tokens['access_token']}"})
        assert me.json()["id"] == account.id


async def test_unknown_user_and_wrong_password_get_the_same_answer(gateway, new_account):
    account = await new_account()
    wrong_password = await gateway.post(
        "/auth/token", data={"username": account.username, "password": "nope-nope-nope"}
    )
    unknown_user = await gateway.post(
        "/auth/token", data={"username": f"ghost_{uuid.uuid4().hex[:8]}", "password": "nope-nope-nope"}
    )
    assert wrong_password.status_code == unknown_user.status_code == 401
    assert wrong_password.json() == unknown_user.json()


async def test_five_failures_lock_the_login_with_retry_after(gateway, new_account):
    account = await new_account()
    for _ in range(5):
        response = await gateway.post(
            "/auth/token", data={"username": account.username, "password": "wrong-password"}
        )
        assert response.status_code == 401
    locked = await gateway.post(
        "/auth/token", data={"username": account.username, "password": account.password}
    )
    assert locked.status_code == 429
    assert 0 < int(locked.headers["retry-after"]) <= 900
    assert locked.json()["error"]["code"] == "too_many_attempts"


async def test_refresh_rotates_and_the_old_token_is_spent(gateway, new_account):
    account = await new_account()
    first = await gateway.post("/auth/refresh", json={"refresh_token": account.refresh_token})
    assert first.status_code == 200
    rotated = first.json()
    assert rotated["refresh_token"] != account.refresh_token
    me = await gateway.get("/auth/me", headers={"Authorization": f"Bearer {rotated['access_token']}"})
    assert me.status_code == 200


async def test_reusing_a_spent_refresh_token_revokes_the_whole_family(gateway, new_account):
    account = await new_account()
    newest = (await gateway.post("/auth/refresh", json={"refresh_token": account.refresh_token})).json()
    reuse = await gateway.post("/auth/refresh", json={"refresh_token": account.refresh_token})
    assert reuse.status_code == 401
    assert reuse.json()["error"]["code"] == "refresh_token_reused"
    # The legitimate-looking newest token is dead too: the family is gone.
    after = await gateway.post("/auth/refresh", json={"refresh_token": newest["refresh_token"]})
    assert after.status_code == 401


async def test_logout_revokes_the_family(gateway, new_account):
    account = await new_account()
    response = await gateway.post("/auth/logout", json={"refresh_token": account.refresh_token})
    assert response.status_code == 204
    again = await gateway.post("/auth/refresh", json={"refresh_token": account.refresh_token})
    assert again.status_code == 401


async def test_unknown_refresh_token_is_401(gateway):
    response = await gateway.post("/auth/refresh", json={"refresh_token": "made-up"})
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "invalid_refresh_token"


async def test_update_me_and_conflicts(gateway, new_account):
    account, other = await new_account(), await new_account()
    new_name = f"renamed_{uuid.uuid4().hex[:8]}"
    response = await gateway.patch("/auth/me", headers=account.headers, json={"username": new_name})
    assert response.status_code == 200 and response.json()["username"] == new_name
    clash = await gateway.patch(
        "/auth/me",
        headers=account.headers,
        json={"email": other.email, "current_password": account.password},
    )
    assert clash.status_code == 409
    me = await gateway.get("/auth/me", headers=account.headers)
    assert me.json()["email"] == account.email  # nothing lost on a refused change


async def test_password_change_revokes_other_sessions_only(gateway, new_account):
    account = await new_account()
    other_session = await login(gateway, account.username, account.password)
    response = await gateway.post(
        "/auth/me/password",
        headers=account.headers,
        json={"current_password": account.password, "new_password": "a-brand-new-password"},
    )
    assert response.status_code == 204
    other = await gateway.post("/auth/refresh", json={"refresh_token": other_session["refresh_token"]})
    assert other.status_code == 401
    current = await gateway.post("/auth/refresh", json={"refresh_token": account.refresh_token})
    assert current.status_code == 200
    old = await gateway.post("/auth/token", data={"username": account.username, "password": account.password})
    assert old.status_code == 401
    await login(gateway, account.username, "a-brand-new-password")


async def test_password_change_needs_the_current_password(gateway, new_account):
    account = await new_account()
    response = await gateway.post(
        "/auth/me/password",
        headers=account.headers,
        json={"current_password": "not-my-password", "new_password": "a-brand-new-password"},
    )
    assert response.status_code == 403


async def _insert_user(db, password_hash: str) -> str:
    username = f"legacy_{uuid.uuid4().hex[:8]}"
    await db.execute(
        "INSERT INTO auth.users (id, email, username, password_hash) VALUES ($1, $2, $3, $4)",
        uuid.uuid4(),
        f"{username}@example.com",
        username,
        password_hash,
    )
    return username


async def test_legacy_bcrypt_hash_logs_in_and_is_rehashed_to_argon2id(gateway, db):
    legacy_hash = bcrypt.hashpw(b"legacy-password", bcrypt.gensalt(rounds=4)).decode()
    assert legacy_hash.startswith("$2b$")
    username = await _insert_user(db, legacy_hash.replace("$2b$", "$2a$", 1))
    await login(gateway, username, "legacy-password")
    stored = await db.fetchval("SELECT password_hash FROM auth.users WHERE username = $1", username)
    assert stored.startswith("$argon2id$")
    await login(gateway, username, "legacy-password")  # and the new hash works


async def test_outdated_argon2_parameters_are_rehashed(gateway, db):
    weak = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1).hash("old-params-password")
    username = await _insert_user(db, weak)
    await login(gateway, username, "old-params-password")
    stored = await db.fetchval("SELECT password_hash FROM auth.users WHERE username = $1", username)
    assert stored != weak
    assert not PasswordHasher().check_needs_rehash(stored)


async def test_registration_can_be_closed(start_service):
    url, _ = start_service("auth", registration_open="false")
    async with httpx.AsyncClient(base_url=url) as client:
        response = await client.post(
            "/auth/register",
            json={"email": "closed@example.com", "username": "closed_door", "password": "password123"},
        )
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "registration_closed"
