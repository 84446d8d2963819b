"""Schema lookups that survive an AWS outage: the registry first, a local copy when it is unreachable.

A producer needs the table's schema to encode, and ``send()`` must not fail just
because DynamoDB is unreachable at the moment an application starts. Every
successful lookup is copied to ``<cache_dir>/<table>.json``; when the registry
cannot be reached, the last copy is used. An unknown table is never served from
the cache: that answer came from the registry, not from the network.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from hybrid_ingest.registry import SchemaVersion
from hybrid_ingest.tables import spec_from_documents

log = logging.getLogger(__name__)


def to_document(version: SchemaVersion) -> dict[str, Any]:
    return {"spec": version.spec.spec_json(), "schema": version.spec.schema, "version": version.version,
            "fingerprint": version.fingerprint.hex(), "registered_at": version.registered_at,
            "envelope": version.envelope}


def from_document(doc: dict[str, Any]) -> SchemaVersion:
    return SchemaVersion(spec=spec_from_documents(doc["spec"], doc["schema"]), version=int(doc["version"]),
                         fingerprint=bytes.fromhex(doc["fingerprint"]), registered_at=float(doc["registered_at"]),
                         envelope=doc["envelope"])


def cached_lookup(lookup: Callable[[str], SchemaVersion], cache_dir: Path) -> Callable[[str], SchemaVersion]:
    """Wrap ``Registry.latest`` with a write-through local copy used only when AWS cannot be reached."""
    cache_dir.mkdir(parents=True, exist_ok=True)

    def latest(table: str) -> SchemaVersion:
        path = cache_dir / f"{table}.json"
        try:
            version = lookup(table)
        except (BotoCoreError, ClientError) as exc:
            if isinstance(exc, ClientError) and not exc.response.get("Error", {}).get("Code", "").endswith(
                    ("Throttling", "ThrottlingException", "ProvisionedThroughputExceededException",
                     "InternalServerError", "ServiceUnavailable", "RequestLimitExceeded")):
                raise
            if not path.exists():
                raise
            log.warning("schema registry unreachable (%s); using the cached schema of %s", exc, table)
            return from_document(json.loads(path.read_text()))
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(json.dumps(to_document(version)))
        os.replace(tmp, path)
        return version

    return latest
