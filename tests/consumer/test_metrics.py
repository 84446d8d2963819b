"""hybrid_ingest.metrics: the EMF document's shape and PutMetricData against moto."""

from __future__ import annotations

import json

from hybrid_ingest.aws import Clients
from hybrid_ingest.metrics import Metrics, emf_document


def test_emf_document_follows_the_embedded_metric_format() -> None:
    doc = emf_document("HybridIngest", {"Records": 5, "MillisBehindLatest": 120},
                       {"Stream": "s", "Shard": "shardId-1"}, {"MillisBehindLatest": "Milliseconds"}, 1_700_000)
    directive = doc["_aws"]
    assert directive["Timestamp"] == 1_700_000
    [block] = directive["CloudWatchMetrics"]
    assert block["Namespace"] == "HybridIngest"
    assert block["Dimensions"] == [["Shard", "Stream"]]
    assert block["Metrics"] == [{"Name": "Records", "Unit": "None"},
                                {"Name": "MillisBehindLatest", "Unit": "Milliseconds"}]
    assert (doc["Stream"], doc["Shard"], doc["Records"], doc["MillisBehindLatest"]) == ("s", "shardId-1", 5.0, 120.0)


def test_emit_logs_one_json_line_and_puts_the_datums(clients: Clients) -> None:
    lines: list[str] = []
    metrics = Metrics("HybridIngest/Test", sink=lines.append, cloudwatch=clients.cloudwatch, clock=lambda: 1.5)
    metrics.emit({"Rows": 3, "Bytes": 2048}, {"Table": "orders"}, {"Rows": "Count", "Bytes": "Bytes"})
    [line] = lines
    assert json.loads(line)["_aws"]["Timestamp"] == 1500
    listed = clients.cloudwatch.list_metrics(Namespace="HybridIngest/Test")["Metrics"]
    assert sorted(m["MetricName"] for m in listed) == ["Bytes", "Rows"]
    assert all(m["Dimensions"] == [{"Name": "Table", "Value": "orders"}] for m in listed)
