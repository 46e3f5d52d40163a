"""``python -m services.documents serve|worker``."""

import sys

from services.documents.settings import get_settings
from shared.cli import run_common, service_parser


def main() -> int:
    parser, _ = service_parser("documents", 8002)
    run_common("documents", parser.parse_args(), get_settings())
    return 0


if __name__ == "__main__":
    sys.exit(main())
