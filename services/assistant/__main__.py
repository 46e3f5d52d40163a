"""``python -m services.assistant serve|worker``."""

import sys

from services.assistant.settings import get_settings
from shared.cli import run_common, service_parser


def main() -> int:
    parser, _ = service_parser("assistant", 8004)
    run_common("assistant", parser.parse_args(), get_settings())
    return 0


if __name__ == "__main__":
    sys.exit(main())
