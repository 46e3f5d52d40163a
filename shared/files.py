"""Files written whole or not at all, for every service that keeps files beside its rows."""

import secrets
from pathlib import Path


def write_file(path: Path, data: bytes) -> None:
    """Write whole or not at all: a reader never sees half a file, two writers never collide."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f"{path.name}.{secrets.token_hex(4)}.part")
    partial.write_bytes(data)
    partial.replace(path)
