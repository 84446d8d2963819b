"""What every Glue job entry script shares: the common job arguments and the Settings they give.

Glue passes its own arguments too (``--JOB_NAME``, ``--job-bookmark-option``, ...),
so unknown arguments are ignored rather than refused.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence

from hybrid_ingest.config import DEFAULT_PREFIX, DEFAULT_REGION, Settings, job_settings


def job_parser(description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--lake_uri", required=True)
    parser.add_argument("--name_prefix", default=DEFAULT_PREFIX)
    parser.add_argument("--region", default=os.environ.get("AWS_REGION", DEFAULT_REGION))
    return parser


def parse_job_args(parser: argparse.ArgumentParser, argv: Sequence[str]) -> tuple[argparse.Namespace, Settings]:
    args, _ = parser.parse_known_args(list(argv))
    return args, job_settings(args.lake_uri, args.region, args.name_prefix)
