"""``python -m services.embeddings serve``: the one process that holds the embedding model."""

import sys

from services.embeddings.settings import get_settings
from shared.cli import run_common, service_parser


def main() -> int:
    parser, _ = service_parser("embeddings", 8005, worker=False)
    run_common("embeddings", parser.parse_args(), get_settings())
    return 0


if __name__ == "__main__":
    sys.exit(main())
