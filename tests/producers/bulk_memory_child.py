"""Run by test_bulk_memory in a fresh process: land an extract and print the peak RSS in bytes."""

from __future__ import annotations

import resource
import sys
from pathlib import Path

from hybrid_ingest.lake import Lake
from hybrid_ingest.registry import SchemaVersion
from hybrid_ingest.tables import envelope_schema, load_spec
from hybrid_ingest.wire import fingerprint
from producers.bulk import push_extract


def main(source: str, lake_dir: str) -> None:
    spec = load_spec(Path(__file__).resolve().parents[2] / "schemas" / "customers.table.json")
    envelope = envelope_schema(spec)
    version = SchemaVersion(spec, 1, fingerprint(envelope), envelope=envelope)
    manifest = push_extract(Lake.from_uri(Path(lake_dir).as_uri()), version, Path(source), 1, "full",
                            rows_per_part=250_000)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(manifest.rows, len(manifest.parts), peak)


if __name__ == "__main__":
    main(*sys.argv[1:])
