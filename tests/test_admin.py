"""Admin routes, the admin CLI, deactivation at the gateway, the last-admin guard, purges."""

import asyncio
import time
import uuid

import pytest

from tests.conftest import ADMIN_PASSWORD, login

ADMIN_ROUTES = [
    ("GET", "/admin/users", None),
    ("POST", "/admin/users", {"username": "x_user", "email": "x@example.com", "password": "password123"}),
    ("GET", "/admin/users/{id}", None),
    ("PATCH", "/admin/users/{id}", {"is_admin": True}),
    ("DELETE", "/admin/users/{id}", None),
    ("GET", "/admin/audit", None),
]


@pytest.mark.parametrize(("method", "path", "body"), ADMIN_ROUTES)
async def test_non_admin_gets_403_on_every_admin_route(gateway, new_account, method, path, body):
    account = await new_account()
    response = await gateway.request(method, path.format(id=account.id), headers=account.headers, json=body)
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "forbidden"
    me = await gateway.get("/auth/me", headers=account.headers)
    assert me.json()["is_admin"] is False  # and nothing changed


def test_admin_cli_refuses_weak_passwords(admin_cli):
    for weak in ("short", "password1234", "aaaaaaaaaaaaaaaa"):
        result = admin_cli(f"weak_{uuid.uuid4().hex[:6]}", "weak@example.com", weak)
        assert result.returncode == 2
        assert "weak" in result.stderr


async def test_admin_cli_promotes_an_existing_user(admin_cli, gateway, new_account):
    account = await new_account()
    result = admin_cli(account.username, account.email, ADMIN_PASSWORD)
    assert result.returncode == 0, result.stderr
    assert "promoted" in result.stdout
    tokens = await login(gateway, account.username, account.password)  # password unchanged
    me = await gateway.get("/auth/me", headers={"Authorization": f"Bearer {tokens['access_token']}"})
    assert me.json()["is_admin"] is True


async def test_list_search_and_paginate_users(gateway, new_admin, new_account):
    admin = await new_admin()
    tag = uuid.uuid4().hex[:6]
    for _ in range(3):
        await new_account(prefix=f"find{tag}")
    page = await gateway.get("/admin/users", headers=admin.headers, params={"q": f"find{tag}", "limit": 2})
    assert page.status_code == 200
    assert page.json()["total"] == 3 and len(page.json()["items"]) == 2
    rest = await gateway.get(
        "/admin/users", headers=admin.headers, params={"q": f"find{tag}", "limit": 2, "offset": 2}
    )
    assert len(rest.json()["items"]) == 1
    wildcard = await gateway.get("/admin/users", headers=admin.headers, params={"q": "%"})
    assert wildcard.json()["total"] == 0  # LIKE wildcards are matched literally


async def test_admin_creates_reads_and_updates_users(gateway, new_admin):
    admin = await new_admin()
    name = f"made_{uuid.uuid4().hex[:8]}"
    created = await gateway.post(
        "/admin/users",
        headers=admin.headers,
        json={"username": name, "email": f"{name}@example.com", "password": "password123"},
    )
    assert created.status_code == 201
    user_id = created.json()["id"]
    fetched = await gateway.get(f"/admin/users/{user_id}", headers=admin.headers)
    assert fetched.json()["username"] == name
    patched = await gateway.patch(
        f"/admin/users/{user_id}", headers=admin.headers, json={"email": f"new_{name}@example.com"}
    )
    assert patched.status_code == 200 and patched.json()["email"] == f"new_{name}@example.com"
    missing = await gateway.get(f"/admin/users/{uuid.uuid4()}", headers=admin.headers)
    assert missing.status_code == 404
    bad_id = await gateway.get("/admin/users/not-a-uuid", headers=admin.headers)
    assert bad_id.status_code == 422


async def test_deactivation_locks_the_user_out_within_a_second(gateway, new_admin, new_account):
    admin, user = await new_admin(), await new_account()
    assert (await gateway.get("/documents", headers=user.headers)).status_code == 200
    response = await gateway.patch(
        f"/admin/users/{user.id}", headers=admin.headers, json={"is_active": False}
    )
    assert response.status_code == 200
    deadline = time.monotonic() + 1.0
    statuses = set()
    while time.monotonic() < deadline:
        statuses.add((await gateway.get("/documents", headers=user.headers)).status_code)
    assert statuses == {401}
    refresh = await gateway.post("/auth/refresh", json={"refresh_token": user.refresh_token})
    assert refresh.status_code == 401
    relogin = await gateway.post("/auth/token", data={"username": user.username, "password": user.password})
    assert relogin.status_code == 403

    await gateway.patch(f"/admin/users/{user.id}", headers=admin.headers, json={"is_active": True})
    tokens = await login(gateway, user.username, user.password)
    again = await gateway.get("/documents", headers={"Authorization": f"Bearer {tokens['access_token']}"})
    assert again.status_code == 200


async def test_last_active_admin_is_protected(gateway, new_admin, db):
    admin = await new_admin()
    await db.execute(
        "UPDATE auth.users SET is_admin = false WHERE is_admin AND id <> $1", uuid.UUID(admin.id)
    )
    path = f"/admin/users/{admin.id}"
    for change in ({"is_admin": False}, {"is_active": False}):
        response = await gateway.patch(path, headers=admin.headers, json=change)
        assert response.status_code == 409
        assert response.json()["error"]["code"] == "last_admin"
    assert (await gateway.delete(path, headers=admin.headers)).status_code == 409

    second = await new_admin()
    demoted = await gateway.patch(path, headers=second.headers, json={"is_admin": False})
    assert demoted.status_code == 200  # not the last one any more
    last = await gateway.patch(f"/admin/users/{second.id}", headers=second.headers, json={"is_active": False})
    assert last.status_code == 409


async def test_no_admin_can_delete_themself(gateway, new_admin):
    first, _ = await new_admin(), await new_admin()
    response = await gateway.delete(f"/admin/users/{first.id}", headers=first.headers)
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "cannot_delete_self"


async def test_delete_user_revokes_access_and_purges_in_every_service(gateway, new_admin, new_account, db):
    admin, user = await new_admin(), await new_account()
    response = await gateway.delete(f"/admin/users/{user.id}", headers=admin.headers)
    assert response.status_code == 204
    assert (await gateway.get("/auth/me", headers=user.headers)).status_code == 401
    assert (await gateway.get(f"/admin/users/{user.id}", headers=admin.headers)).status_code == 404
    rows = await db.fetch(
        "SELECT service, enqueued_at FROM auth.purge_requests WHERE user_id = $1", uuid.UUID(user.id)
    )
    assert sorted(r["service"] for r in rows) == ["assistant", "documents", "mail"]
    assert all(r["enqueued_at"] is not None for r in rows)

    async def all_completed() -> bool:
        pending = await db.fetchval(
            "SELECT count(*) FROM auth.purge_requests WHERE user_id = $1 AND completed_at IS NULL",
            uuid.UUID(user.id),
        )
        return pending == 0

    deadline = time.monotonic() + 20
    while not await all_completed() and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
    assert await all_completed(), "the documents, mail and assistant workers did not report the purge"


async def test_admin_actions_are_audited(gateway, new_admin, new_account):
    admin, user = await new_admin(), await new_account()
    await gateway.patch(f"/admin/users/{user.id}", headers=admin.headers, json={"is_active": False})
    await gateway.delete(f"/admin/users/{user.id}", headers=admin.headers)
    audit = await gateway.get("/admin/audit", headers=admin.headers, params={"limit": 200})
    assert audit.status_code == 200
    mine = [e for e in audit.json()["items"] if e["target_user_id"] == user.id]
    assert [e["action"] for e in mine] == ["user.delete", "user.update"]
    assert all(e["actor_id"] == admin.id for e in mine)
    assert mine[1]["details"] == {"is_active": False}
