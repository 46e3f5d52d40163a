"""``python -m services.gateway serve`` (the only process that binds a public address)."""

import sys

from services.gateway.settings import get_settings
from shared.cli import run_common, service_parser


def main() -> int:
    parser, _ = service_parser("gateway", 8000, host="0.0.0.0", worker=False)
    run_common("gateway", parser.parse_args(), get_settings())
    return 0


if __name__ == "__main__":
    sys.exit(main())
