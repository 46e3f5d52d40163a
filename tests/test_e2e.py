"""End to end: the processes `make run` starts (the Procfile, supervised), driven through the gateway."""

import psutil

from tests.conftest import login

# gateway, auth, documents, mail, assistant (each with its worker inside), embeddings
# (and llm, which becomes llama.cpp's server)
PROCFILE_PROCESSES = 6


def test_every_procfile_process_is_running(stack):
    supervisor = psutil.Process(stack.process.pid)
    commands = [" ".join(child.cmdline()) for child in supervisor.children(recursive=True)]
    services = [c for c in commands if c.startswith("python -m services.")]
    assert len(services) == PROCFILE_PROCESSES, commands
    for name in (
        "gateway serve ",
        "auth serve --with-worker ",
        "documents serve --with-worker ",
        "mail serve --with-worker ",
        "embeddings serve ",
        "assistant serve --with-worker ",
    ):
        assert any(name in c for c in services), name
    assert any("-m llama_cpp.server" in c and ".gguf" in c for c in commands), commands


def test_only_the_embeddings_process_loads_the_model(stack):
    """One model copy: documents and mail (API and their workers) ask the embeddings process."""
    supervisor = psutil.Process(stack.process.pid)
    loaded = {}
    for child in supervisor.children(recursive=True):
        command = " ".join(child.cmdline())
        if command.startswith("python -m services."):
            name = " ".join(command.split()[2:4])
            loaded[name] = any("libtorch" in m.path for m in child.memory_maps())
    assert loaded.pop("services.embeddings serve") is True
    assert loaded and not any(loaded.values()), loaded


async def test_register_login_me_and_every_service_through_the_gateway(gateway):
    user = {"email": "e2e@example.com", "username": "e2e_user", "password": "an-e2e-password"}
    registered = await gateway.post("/auth/register", json=user)
    assert registered.status_code == 201
    tokens = await login(gateway, "e2e_user", "an-e2e-password")
    headers = {"Authorization": f"Bearer {tokens['access_token']}"}

    me = await gateway.get("/auth/me", headers=headers)
    assert me.status_code == 200
    assert me.json() == registered.json()
    assert (await gateway.get("/documents", headers=headers)).json() == {"items": [], "total": 0}
    assert (await gateway.get("/mail/accounts", headers=headers)).json() == {"items": []}

    refreshed = await gateway.post("/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    assert refreshed.status_code == 200
    logout = await gateway.post("/auth/logout", json={"refresh_token": refreshed.json()["refresh_token"]})
    assert logout.status_code == 204
