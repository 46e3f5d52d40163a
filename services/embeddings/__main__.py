"""``python -m services.embeddings serve``: the one process that holds the embedding model."""

import os
import sys

# Read by the OpenMP runtime when torch loads. The model shares the machine's cores with the
# services waiting for its answers: threads that spin after a pass (OpenMP's default) steal
# the CPU those services need to use the answer (measured: +9 ms search p95 on 2 cores).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from services.embeddings.settings import get_settings
from shared.cli import run_common, service_parser


def main() -> int:
    parser, _ = service_parser("embeddings", 8005, worker=False)
    run_common("embeddings", parser.parse_args(), get_settings())
    return 0


if __name__ == "__main__":
    sys.exit(main())
