"""``python -m services.assistant serve|worker|import-legacy``."""

import sys

from services.assistant.legacy import importer
from services.assistant.settings import get_settings
from shared.cli import run_common, service_parser
from shared.legacy.cli import add_import_command, run_import


def main() -> int:
    parser, commands = service_parser("assistant", 8004)
    add_import_command(commands)
    args = parser.parse_args()
    settings = get_settings()
    if run_common("assistant", args, settings):
        return 0
    return run_import(importer(settings), args)


if __name__ == "__main__":
    sys.exit(main())
