"""``python -m services.mail serve|worker``."""

import sys

from services.mail.settings import get_settings
from shared.cli import run_common, service_parser


def main() -> int:
    parser, _ = service_parser("mail", 8003)
    run_common("mail", parser.parse_args(), get_settings())
    return 0


if __name__ == "__main__":
    sys.exit(main())
