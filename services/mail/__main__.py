"""``python -m services.mail serve|worker|keygen|import-legacy``."""

import os
import sys
from pathlib import Path

from services.mail.crypto import generate_key
from services.mail.legacy import importer
from services.mail.settings import get_settings
from shared.cli import run_common, service_parser
from shared.legacy.cli import add_import_command, run_import


def write_key_file(path: Path) -> bool:
    """Create the token key file (mode 0600) unless it exists; True if it was created."""
    if path.exists():
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as handle:
        handle.write(generate_key() + "\n")
    return True


def main() -> int:
    parser, commands = service_parser("mail", 8003)
    commands.add_parser("keygen", help="create the OAuth token encryption key file if missing")
    add_import_command(commands)
    args = parser.parse_args()
    settings = get_settings()
    if run_common("mail", args, settings):
        return 0
    if args.command == "import-legacy":  # the legacy SECRET_KEY comes from LEGACY_SECRET_KEY
        return run_import(importer(settings), args)
    path = settings.mail_token_keys_file
    print(("created " if write_key_file(path) else "kept existing ") + str(path))
    return 0


if __name__ == "__main__":
    sys.exit(main())
