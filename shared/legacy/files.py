"""Finding a legacy file under the folder the operator names.

Legacy rows hold the legacy server's path: absolute (``…/backend/data/uploads/<user>/<name>``),
an older layout (``…/static/uploads/…``) or relative. Only the tail below the last ``uploads``
folder is used, and nothing outside the given folder is ever read (``..`` and symbolic links
that leave it are refused).
"""

from pathlib import Path, PurePosixPath


def find_legacy_file(root: Path, legacy_path: str, legacy_owner: int | None) -> Path | None:
    """The file under ``root``: the path's tail below its last ``uploads`` folder, then
    ``<owner>/<name>``, then ``<name>``; None when none of them is a file inside ``root``."""
    parts = [p for p in PurePosixPath(legacy_path.replace("\\", "/")).parts if p not in ("/", ".", "")]
    if "uploads" in parts:
        parts = parts[len(parts) - parts[::-1].index("uploads") :]
    if not parts:
        return None
    base = root.resolve()
    candidates = [parts, [parts[-1]]]
    if legacy_owner is not None:
        candidates.insert(1, [str(legacy_owner), parts[-1]])
    for candidate in candidates:
        if ".." in candidate:
            continue
        path = base.joinpath(*candidate).resolve()
        if path.is_relative_to(base) and path.is_file():
            return path
    return None
