"""``python -m services.documents serve|worker|import-legacy``."""

import sys

from services.documents.legacy import importer
from services.documents.settings import get_settings
from shared.cli import run_common, service_parser
from shared.legacy.cli import add_import_command, run_import


def main() -> int:
    parser, commands = service_parser("documents", 8002)
    add_import_command(commands)
    args = parser.parse_args()
    settings = get_settings()
    if run_common("documents", args, settings):
        return 0
    return run_import(importer(settings), args)


if __name__ == "__main__":
    sys.exit(main())
