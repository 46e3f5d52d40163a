"""``make env``: write ``.env`` for docker-compose from ``.env.example``, and the JWT signing key.

Every ``change-me`` placeholder in ``.env.example`` becomes a fresh random secret (a Fernet
key for the variables in ``FERNET_KEYS``); every other value is copied as is. ``.env`` is
created with mode 0600 and an existing one is kept unless ``--force`` is given. The Ed25519
key ``data/keys/jwt_ed25519.pem`` (mounted into the auth container as a compose secret) is
created by ``python -m services.auth keygen`` if missing.

Usage: ``python infra/make_env.py [--force]`` (paths are relative to the repository root).
"""

import argparse
import base64
import os
import secrets
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / ".env.example"
ENV_FILE = ROOT / ".env"
JWT_KEY = Path("data/keys/jwt_ed25519.pem")  # relative to ROOT, as docker-compose.yml expects
PLACEHOLDER = "change-me"
FERNET_KEYS = {"MAIL_TOKEN_KEYS"}  # 32 random bytes, url-safe base64, as Fernet reads them
HOST_IDS = {"HOST_UID": os.getuid, "HOST_GID": os.getgid}
HEADER = "# Written by `make env` (infra/make_env.py) from .env.example. Secret: keep it 0600.\n"


def render_env(example: str) -> str:
    """The ``.env`` text: ``.env.example`` with each placeholder replaced by a random secret.

    A leading block of comments only (up to the first blank line) describes the example
    itself, so it is replaced by :data:`HEADER`.
    """
    head, blank, rest = example.partition("\n\n")
    intro = blank and all(line.startswith("#") for line in head.splitlines())
    body = rest if intro else example
    lines = [HEADER]
    for line in body.splitlines():
        name, sep, value = line.partition("=")
        if sep and not line.lstrip().startswith("#") and value.strip() == PLACEHOLDER:
            line = f"{name}={_secret(name)}"
        elif name in HOST_IDS:
            line = f"{name}={HOST_IDS[name]()}"
        lines.append(line)
    return "\n".join(lines) + "\n"


def _secret(name: str) -> str:
    if name in FERNET_KEYS:
        return base64.urlsafe_b64encode(secrets.token_bytes(32)).decode("ascii")
    return secrets.token_urlsafe(32)


def write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path``, readable by the owner only (also when it already existed)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        os.fchmod(handle.fileno(), 0o600)
        handle.write(text)


def ensure_jwt_key(root: Path = ROOT) -> None:
    """Create the auth service's signing key through its own CLI unless it exists."""
    if (root / JWT_KEY).exists():
        print(f"kept existing {JWT_KEY}")
        return
    env = {**os.environ, "PAI_JWT_PRIVATE_KEY_FILE": str(JWT_KEY)}
    # Fixed argv, no shell: runs this interpreter on the project's own keygen command.
    subprocess.run([sys.executable, "-m", "services.auth", "keygen"], cwd=root, env=env, check=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--force", action="store_true", help="overwrite an existing .env")
    args = parser.parse_args(argv)

    status = 0
    if ENV_FILE.exists() and not args.force:
        print(f"refusing to overwrite {ENV_FILE} (use --force)", file=sys.stderr)
        status = 1
    else:
        write_private(ENV_FILE, render_env(EXAMPLE.read_text(encoding="utf-8")))
        print(f"wrote {ENV_FILE} (mode 0600)")
    ensure_jwt_key()
    return status


if __name__ == "__main__":
    sys.exit(main())
