"""CloudWatch metrics for every component: embedded metric format (EMF) log lines and/or PutMetricData.

EMF is the cheap path on AWS: a JSON log line in the documented shape becomes a metric
when CloudWatch Logs ingests it (Lambda, ECS with awslogs, Glue's continuous logs), with
no API call on the hot path. ``put_metric_data`` is the path that works everywhere,
including moto's server locally, and is what ``status``-style checks can read back.
The EMF document is built here by hand: it is a small, documented JSON shape, and the
``aws-embedded-metrics`` package would bring an asyncio runtime for one ``json.dumps``.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mypy_boto3_cloudwatch import CloudWatchClient

Sink = Callable[[str], None]
Units = str | Mapping[str, str]

LOGGER = logging.getLogger("hybrid_ingest.metrics")
PUT_METRIC_DATA_BATCH = 1000  # PutMetricData's limit of datums per call


def _unit_of(units: Units, name: str) -> str:
    if isinstance(units, str):
        return units
    return units.get(name, "None")


def emf_document(namespace: str, metrics: Mapping[str, float], dimensions: Mapping[str, str],
                 units: Units = "Count", timestamp_ms: int | None = None) -> dict[str, Any]:
    """One EMF log event: the ``_aws`` directive, dimension values and metric values at top level."""
    when = int(time.time() * 1000) if timestamp_ms is None else timestamp_ms
    doc: dict[str, Any] = {
        "_aws": {
            "Timestamp": when,
            "CloudWatchMetrics": [{
                "Namespace": namespace,
                "Dimensions": [sorted(dimensions)],
                "Metrics": [{"Name": name, "Unit": _unit_of(units, name)} for name in metrics],
            }],
        },
    }
    doc.update(dimensions)
    doc.update({name: float(value) for name, value in metrics.items()})
    return doc


def metric_datums(metrics: Mapping[str, float], dimensions: Mapping[str, str],
                  units: Units = "Count") -> list[dict[str, Any]]:
    """The same figures as PutMetricData datums."""
    dims = [{"Name": k, "Value": v} for k, v in sorted(dimensions.items())]
    return [{"MetricName": name, "Value": float(value), "Unit": _unit_of(units, name), "Dimensions": dims}
            for name, value in metrics.items()]


@dataclass
class Metrics:
    """Emitter bound to a namespace; either output may be switched off by passing None."""

    namespace: str
    sink: Sink | None = field(default=LOGGER.info)
    cloudwatch: CloudWatchClient | None = None
    clock: Callable[[], float] = time.time

    def emit(self, metrics: Mapping[str, float], dimensions: Mapping[str, str],
             unit: Units = "Count") -> dict[str, Any]:
        """Publish figures under one set of dimensions; ``unit`` is one unit or a unit per metric name.

        Returns the EMF document so callers (and tests) can see exactly what was published.
        """
        doc = emf_document(self.namespace, metrics, dimensions, unit, int(self.clock() * 1000))
        if self.sink is not None:
            self.sink(json.dumps(doc, sort_keys=True))
        if self.cloudwatch is not None and metrics:
            datums = metric_datums(metrics, dimensions, unit)
            for start in range(0, len(datums), PUT_METRIC_DATA_BATCH):
                self.cloudwatch.put_metric_data(Namespace=self.namespace,
                                                MetricData=datums[start:start + PUT_METRIC_DATA_BATCH])  # type: ignore[arg-type]
        return doc
