"""The deployment files: docker-compose.yml, infra/Dockerfile, .env.example and infra/make_env.py."""

import importlib.util
import os
import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

from services.mail.crypto import parse_keys
from shared.registry import health_path

ROOT = Path(__file__).resolve().parent.parent
COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "infra" / "Dockerfile"
ENV_EXAMPLE = ROOT / ".env.example"
MAKE_ENV = ROOT / "infra" / "make_env.py"

INFRA_SERVICES = ("postgres", "redis", "weaviate")
HTTP_SERVICES = {
    "gateway": 8000,
    "auth": 8001,
    "documents": 8002,
    "mail": 8003,
    "assistant": 8004,
    "embeddings": 8005,
}
# The local language model: llama.cpp's server, checked where the registry says it answers.
MODEL_SERVICES = {"llm": 8006}
STATELESS = ("embeddings", "llm")  # no database, no migrations to wait for
WORKERS = ("auth-worker", "documents-worker", "mail-worker", "assistant-worker")
APP_SERVICES = (*HTTP_SERVICES, *MODEL_SERVICES, *WORKERS)  # long-running, built from infra/Dockerfile
REQUIRED_SERVICES = {*INFRA_SERVICES, "migrate", *APP_SERVICES}
VECTOR_SERVICES = ("documents", "documents-worker", "mail", "mail-worker")

# `${VAR:?message}`: compose refuses to start when VAR is unset or empty.
REQUIRED_REF = re.compile(r"\$\{[A-Z][A-Z0-9_]*:\?[^}]+\}")
ANY_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)([^}]*)\}")
SECRET_NAME = re.compile(r"PASSWORD|KEY|SECRET|TOKEN(?!S$)|_AUTH$")  # not "..._CONTEXT_TOKENS"
# Variables whose names look secret but which hold configuration; their values are pinned.
NOT_SECRETS = {
    "PAI_JWT_PRIVATE_KEY_FILE": "/run/secrets/jwt_private_key",
    "AUTHENTICATION_APIKEY_ENABLED": "true",
    "AUTHENTICATION_APIKEY_USERS": "pai",
    "LEGACY_SECRET_KEY_FILE": "/legacy/secret_key",
}
# scheme://user:password@ where the password may be a `${VAR:?message with spaces}`.
DSN_PASSWORD = re.compile(r"[a-z][a-z0-9+]*://[^:/@\s]*:(\$\{[^}]*\}|[^@\s]*)@")


def load_make_env() -> ModuleType:
    spec = importlib.util.spec_from_file_location("make_env", MAKE_ENV)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def compose_text() -> str:
    return COMPOSE_FILE.read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def compose(compose_text: str) -> dict[str, Any]:
    return yaml.safe_load(compose_text)


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return compose["services"]


def environment(service: dict[str, Any]) -> dict[str, str]:
    """A service's environment as a dict, whether written as a mapping or a list."""
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.partition("=")[::2] for item in env)
    return {str(k): "" if v is None else str(v) for k, v in env.items()}


def command_text(service: dict[str, Any]) -> str:
    command = service.get("command", "")
    return " ".join(map(str, command)) if isinstance(command, list) else str(command)


def all_strings(node: Any) -> list[str]:
    if isinstance(node, dict):
        return [s for key, value in node.items() for s in all_strings(key) + all_strings(value)]
    if isinstance(node, list):
        return [s for item in node for s in all_strings(item)]
    return [node] if isinstance(node, str) else []


def env_example_vars() -> dict[str, str]:
    pairs = {}
    for line in ENV_EXAMPLE.read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, sep, value = line.partition("=")
            assert sep, f".env.example line without '=': {line!r}"
            pairs[name.strip()] = value.strip()
    return pairs


# --- docker-compose itself -------------------------------------------------------------------


def run_compose_config(env_file: Path) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("docker-compose")
    if binary is None:
        pytest.skip("the docker-compose binary is not installed (apt-get install docker-compose)")
    # Variables from the calling shell would override the env file; drop them.
    clean_env = {k: v for k, v in os.environ.items() if k not in env_example_vars()}
    return subprocess.run(
        [binary, "-f", str(COMPOSE_FILE), "--env-file", str(env_file), "config", "-q"],
        cwd=ROOT,
        env=clean_env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_docker_compose_validates_the_file(tmp_path: Path) -> None:
    env_file = tmp_path / "compose.env"
    env_file.write_text(load_make_env().render_env(ENV_EXAMPLE.read_text(encoding="utf-8")))
    result = run_compose_config(env_file)
    assert result.returncode == 0, result.stderr


def test_docker_compose_refuses_a_missing_secret(tmp_path: Path) -> None:
    rendered = load_make_env().render_env(ENV_EXAMPLE.read_text(encoding="utf-8"))
    env_file = tmp_path / "compose.env"
    env_file.write_text(
        "".join(line for line in rendered.splitlines(True) if not line.startswith("REDIS_PASSWORD="))
    )
    result = run_compose_config(env_file)
    assert result.returncode != 0
    assert "set it with make env" in result.stderr


# --- structure -------------------------------------------------------------------------------


def test_compose_has_exactly_the_required_services(services: dict[str, Any]) -> None:
    assert set(services) == REQUIRED_SERVICES


def test_no_version_key_or_a_compose_3_9_one(compose: dict[str, Any]) -> None:
    assert compose.get("version", "3.9") == "3.9"


def test_every_long_running_service_has_a_healthcheck(services: dict[str, Any]) -> None:
    for name, service in services.items():
        if name == "migrate":
            assert "healthcheck" not in service
            continue
        check = service.get("healthcheck")
        assert check, f"{name} has no healthcheck"
        assert not check.get("disable", False), f"{name} disables its healthcheck"
        assert check.get("test") and check["test"] != ["NONE"], f"{name}: empty healthcheck"


def test_http_services_check_their_own_healthz(services: dict[str, Any]) -> None:
    for name, port in HTTP_SERVICES.items():
        test = " ".join(services[name]["healthcheck"]["test"])
        assert "urllib.request" in test, name
        assert f"127.0.0.1:{port}/healthz" in test, name
        assert f"--port {port}" in command_text(services[name]), name
        assert command_text(services[name]).startswith(f"python -m services.{name} serve"), name


def test_the_llm_service_checks_its_model_api(services: dict[str, Any]) -> None:
    for name, port in MODEL_SERVICES.items():
        test = " ".join(services[name]["healthcheck"]["test"])
        assert f"127.0.0.1:{port}{health_path(name)}" in test, name
        assert command_text(services[name]).startswith(f"python -m services.{name} serve"), name
        assert f"--port {port}" in command_text(services[name]), name
    assert environment(services["assistant"])["PAI_LLM_URL"] == "http://llm:8006"
    assert services["assistant"]["depends_on"]["llm"] == {"condition": "service_healthy"}


def test_workers_use_the_arq_health_check(services: dict[str, Any]) -> None:
    for name in WORKERS:
        package = name.removesuffix("-worker")
        assert command_text(services[name]) == f"python -m services.{package} worker"
        test = services[name]["healthcheck"]["test"]
        assert test == ["CMD", "python", "-m", f"services.{package}", "worker", "--check"]


def test_infrastructure_healthchecks(services: dict[str, Any]) -> None:
    assert "pg_isready" in " ".join(services["postgres"]["healthcheck"]["test"])
    assert "ping" in " ".join(services["redis"]["healthcheck"]["test"])
    weaviate_test = " ".join(services["weaviate"]["healthcheck"]["test"])
    assert "/v1/.well-known/ready" in weaviate_test


def test_only_the_gateway_publishes_a_port(services: dict[str, Any]) -> None:
    publishing = sorted(name for name, service in services.items() if service.get("ports"))
    assert publishing == ["gateway"]
    assert services["gateway"]["ports"] == ["8000:8000"]
    for name, service in services.items():
        assert service.get("network_mode") != "host", name


def test_app_services_are_built_from_the_one_dockerfile(services: dict[str, Any]) -> None:
    for name in (*APP_SERVICES, "migrate"):
        build = services[name].get("build")
        assert isinstance(build, dict), name
        assert build["dockerfile"] == "infra/Dockerfile", name
        assert build.get("context", ".") == ".", name


def test_app_services_wait_for_migrations_and_dependencies(services: dict[str, Any]) -> None:
    for name in APP_SERVICES:
        if name in STATELESS:
            assert "depends_on" not in services[name], name
            continue
        depends = services[name].get("depends_on")
        assert isinstance(depends, dict), f"{name}: depends_on needs conditions"
        assert depends["migrate"] == {"condition": "service_completed_successfully"}, name
        assert depends["postgres"] == {"condition": "service_healthy"}, name
        assert depends["redis"] == {"condition": "service_healthy"}, name
        if name in VECTOR_SERVICES:
            assert depends["weaviate"] == {"condition": "service_healthy"}, name
            assert depends["embeddings"] == {"condition": "service_healthy"}, name
            assert environment(services[name])["PAI_EMBEDDINGS_URL"] == "http://embeddings:8005", name


def test_migrate_is_a_one_shot_job(services: dict[str, Any]) -> None:
    migrate = services["migrate"]
    # The migrations, then the legacy import only when LEGACY_DB names a legacy database.
    assert command_text(migrate) == (
        'sh -c python -m shared.migrate && if [ -n "$$LEGACY_DB" ]; then python infra/import_legacy.py; fi'
    )
    assert (
        "appdata:/data" in migrate["volumes"] and "${LEGACY_DIR:-./legacy}:/legacy:ro" in migrate["volumes"]
    )
    assert str(migrate["restart"]) == "no"
    assert migrate["depends_on"]["postgres"] == {"condition": "service_healthy"}
    assert set(environment(migrate)) >= {
        "PAI_DATABASE_URL",
        "PAI_AUTH_DATABASE_URL",
        "PAI_DOCUMENTS_DATABASE_URL",
        "PAI_MAIL_DATABASE_URL",
        "PAI_ASSISTANT_DATABASE_URL",
    }


def test_each_service_gets_only_its_own_database(services: dict[str, Any]) -> None:
    for name in APP_SERVICES:
        dsns = {key for key in environment(services[name]) if key.endswith("DATABASE_URL")}
        package = name.removesuffix("-worker")
        stateless = package == "gateway" or package in STATELESS
        expected = set() if stateless else {f"PAI_{package.upper()}_DATABASE_URL"}
        assert dsns == expected, name
        for key in expected:
            dsn = environment(services[name])[key]
            assert dsn.startswith(f"postgresql://pai_{package}:"), name
            assert dsn.endswith("@postgres:5432/pai"), name


def test_redis_persists_with_aof_and_requires_a_password(services: dict[str, Any]) -> None:
    command = services["redis"]["command"]
    assert isinstance(command, list), "keep the redis command a list of arguments"
    assert command[0] == "redis-server"
    assert command[command.index("--appendonly") + 1] == "yes"
    assert REQUIRED_REF.fullmatch(command[command.index("--requirepass") + 1])
    assert any(volume.endswith(":/data") for volume in services["redis"]["volumes"])


def test_weaviate_is_private_persistent_and_vectorizer_free(services: dict[str, Any]) -> None:
    weaviate = services["weaviate"]
    image, _, tag = weaviate["image"].rpartition(":")
    assert image == "cr.weaviate.io/semitechnologies/weaviate"
    assert tuple(int(part) for part in tag.split(".")[:2]) >= (1, 27), tag
    env = environment(weaviate)
    assert env["DEFAULT_VECTORIZER_MODULE"] == "none"
    assert env["ENABLE_MODULES"] == ""
    assert env["AUTHENTICATION_ANONYMOUS_ACCESS_ENABLED"] == "false"
    assert env["AUTHENTICATION_APIKEY_ENABLED"] == "true"
    assert env["AUTHENTICATION_APIKEY_ALLOWED_KEYS"] == "${WEAVIATE_API_KEY:?set it with make env}"
    data_path = env["PERSISTENCE_DATA_PATH"]
    assert any(volume.endswith(f":{data_path}") for volume in weaviate["volumes"])


def test_postgres_uses_a_volume_and_the_env_password(services: dict[str, Any]) -> None:
    postgres = services["postgres"]
    assert postgres["image"] == "postgres:15"
    assert REQUIRED_REF.fullmatch(environment(postgres)["POSTGRES_PASSWORD"])
    assert any(volume.endswith(":/var/lib/postgresql/data") for volume in postgres["volumes"])


def test_documents_and_mail_share_one_data_volume(compose: dict[str, Any], services: dict[str, Any]) -> None:
    sources = set()
    for name in VECTOR_SERVICES:
        mounts = [v for v in services[name].get("volumes", []) if v.endswith(":/data")]
        assert len(mounts) == 1, name
        sources.add(mounts[0].split(":")[0])
        assert environment(services[name])["PAI_DATA_DIR"] == "/data", name
        assert environment(services[name])["WEAVIATE_URL"] == "http://weaviate:8080", name
    assert len(sources) == 1
    assert sources.pop() in compose["volumes"]


def test_jwt_key_reaches_auth_as_a_compose_secret(compose: dict[str, Any], services: dict[str, Any]) -> None:
    assert compose["secrets"] == {"jwt_private_key": {"file": "./data/keys/jwt_ed25519.pem"}}
    assert services["auth"]["secrets"] in (["jwt_private_key"], [{"source": "jwt_private_key"}])
    assert environment(services["auth"])["PAI_JWT_PRIVATE_KEY_FILE"] == ("/run/secrets/jwt_private_key")
    holders = sorted(name for name, service in services.items() if service.get("secrets"))
    assert holders == ["auth"]


def test_jwks_url_goes_to_every_service_but_auth(services: dict[str, Any]) -> None:
    jwks = "http://auth:8001/auth/.well-known/jwks.json"
    for name in ("gateway", "documents", "documents-worker", "mail", "mail-worker", "assistant"):
        assert environment(services[name])["PAI_JWKS_URL"] == jwks, name
    assert "PAI_JWKS_URL" not in environment(services["auth"])


# --- secrets ---------------------------------------------------------------------------------


def test_secret_variables_are_required_references(services: dict[str, Any]) -> None:
    checked = 0
    for name, service in services.items():
        for key, value in environment(service).items():
            if not SECRET_NAME.search(key):
                continue
            if key in NOT_SECRETS:
                assert value == NOT_SECRETS[key], f"{name}: {key}"
                continue
            assert REQUIRED_REF.fullmatch(value), f"{name}: {key} is not a ${{VAR:?...}}"
            checked += 1
    assert checked >= 7  # postgres, redis, weaviate and the four documents/mail processes


def test_every_dsn_password_is_a_required_reference(compose: dict[str, Any]) -> None:
    passwords = [match.group(1) for text in all_strings(compose) for match in DSN_PASSWORD.finditer(text)]
    assert len(passwords) >= 5  # admin, three roles, redis
    for password in passwords:
        assert REQUIRED_REF.fullmatch(password), password


def test_no_secret_has_a_default_value(compose_text: str) -> None:
    references = ANY_REF.findall(compose_text)
    assert references
    for name, modifier in references:
        if SECRET_NAME.search(name):
            assert modifier.startswith(":?"), f"${{{name}{modifier}}} must be ${{{name}:?...}}"


# --- Dockerfile ------------------------------------------------------------------------------


def test_dockerfile_runs_as_a_non_root_user() -> None:
    lines = DOCKERFILE.read_text(encoding="utf-8").splitlines()
    users = [line.split(None, 1)[1].strip() for line in lines if line.startswith("USER ")]
    assert users, "the Dockerfile has no USER line"
    user = users[-1].split(":")[0]
    assert user not in {"root", "0"}
    assert user == "10001"


def test_dockerfile_installs_the_locked_requirements() -> None:
    text = DOCKERFILE.read_text(encoding="utf-8")
    assert re.search(r"^FROM python:3\.11-slim\b", text, re.MULTILINE)
    install = re.search(r"pip install (?:\\\n|[^\n])*", text)  # the RUN line and its continuations
    assert install, "the Dockerfile installs nothing with pip"
    assert "--require-hashes" in install.group(0) and "-r requirements.lock" in install.group(0)
    assert "--no-cache-dir" in text
    assert "PYTHONUNBUFFERED=1" in text
    assert "HF_HUB_OFFLINE=1" in text
    assert re.search(r"^WORKDIR /app$", text, re.MULTILINE)
    assert re.search(r"chown 10001:10001 /data", text)
    for source in ("shared/", "services/", "pyproject.toml"):
        assert re.search(rf"^COPY {re.escape(source)}", text, re.MULTILINE), source
    assert not re.search(r"PASSWORD|SECRET|PRIVATE_KEY", text)


# --- .env.example and make_env ---------------------------------------------------------------


def test_env_example_documents_every_compose_variable(compose_text: str) -> None:
    referenced = {name for name, _ in ANY_REF.findall(compose_text)}
    documented = env_example_vars()
    assert referenced, "docker-compose.yml references no variables"
    assert referenced - set(documented) == set()
    assert set(documented) - referenced == set()


def test_env_example_comments_each_variable_and_uses_placeholders(compose_text: str) -> None:
    lines = ENV_EXAMPLE.read_text(encoding="utf-8").splitlines()
    for index, line in enumerate(lines):
        if line.strip() and not line.startswith("#"):
            assert index > 0 and lines[index - 1].startswith("# "), f"undocumented: {line}"
    for name, value in env_example_vars().items():
        if SECRET_NAME.search(name):
            assert value == "change-me", name


def test_make_env_renders_fresh_secrets() -> None:
    make_env = load_make_env()
    example = ENV_EXAMPLE.read_text(encoding="utf-8")
    first, second = make_env.render_env(example), make_env.render_env(example)
    assert "change-me" not in first
    values = dict(line.split("=", 1) for line in first.splitlines() if line and not line.startswith("#"))
    secret_names = [name for name in env_example_vars() if SECRET_NAME.search(name)]
    assert secret_names
    for name in secret_names:
        assert len(values[name]) >= 32, name
        if name in make_env.FERNET_KEYS:  # never inside a DSN; must be what Fernet reads
            assert parse_keys(values[name]) == [values[name]], name
            continue
        assert re.fullmatch(r"[A-Za-z0-9_-]+", values[name]), "must be safe inside a DSN"
    assert len({values[name] for name in secret_names}) == len(secret_names)
    assert first != second
    assert values["GATEWAY_FORWARDED_ALLOW_IPS"] == env_example_vars()["GATEWAY_FORWARDED_ALLOW_IPS"]


def test_make_env_writes_0600_and_refuses_to_overwrite(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_env = load_make_env()
    keygens: list[bool] = []
    monkeypatch.setattr(make_env, "ENV_FILE", tmp_path / ".env")
    monkeypatch.setattr(make_env, "ensure_jwt_key", lambda: keygens.append(True))

    assert make_env.main([]) == 0
    env_file = tmp_path / ".env"
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o600
    written = env_file.read_text()
    assert "change-me" not in written

    assert make_env.main([]) == 1
    assert env_file.read_text() == written

    env_file.chmod(0o644)
    assert make_env.main(["--force"]) == 0
    assert env_file.read_text() != written
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o600
    assert keygens == [True, True, True], "the key is ensured on every run"


def test_make_env_creates_the_jwt_key_with_the_auth_cli(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_env = load_make_env()
    calls: list[tuple[list[str], dict[str, Any]]] = []
    monkeypatch.setattr(make_env.subprocess, "run", lambda argv, **kw: calls.append((argv, kw)))

    make_env.ensure_jwt_key(tmp_path)
    assert len(calls) == 1
    argv, kwargs = calls[0]
    assert argv == [sys.executable, "-m", "services.auth", "keygen"]
    assert kwargs["cwd"] == tmp_path
    assert kwargs["env"]["PAI_JWT_PRIVATE_KEY_FILE"] == "data/keys/jwt_ed25519.pem"
    assert kwargs["check"] is True

    key = tmp_path / "data" / "keys" / "jwt_ed25519.pem"
    key.parent.mkdir(parents=True)
    key.write_text("existing")
    make_env.ensure_jwt_key(tmp_path)
    assert len(calls) == 1, "an existing key must be kept"
