"""The state table's adapter base: the DynamoDB client, table name and clock every part of the state shares.

The state store is one class over one table (``hybrid_ingest.state.StateStore``),
its concerns in modules of their own: shard checkpoints and consumer stats
(``state_stream``), leases (``state_leases``), and the merge's own state
(``state``). Each is a mixin over this base.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

Clock = Callable[[], float]


def condition_failed(exc: ClientError) -> bool:
    """Whether a conditional write was refused (the compare-and-set lost), as opposed to any other failure."""
    return exc.response["Error"]["Code"] == "ConditionalCheckFailedException"


class StateTable:
    """The state table's client, name and clock; ``clock`` is injectable for tests."""

    def __init__(self, dynamodb: DynamoDBClient, state_table: str, clock: Clock = time.time) -> None:
        self._ddb = dynamodb
        self._state = state_table
        self._clock = clock
        self.page_size: int | None = None  # tests set it to see queries cross pages

    def _query(self, kwargs: dict[str, Any]) -> Iterator[dict[str, Any]]:
        """Every item of a query, across pages (a page ends at 1 MB, or at ``page_size`` items)."""
        kwargs = {**kwargs, **({"Limit": self.page_size} if self.page_size else {})}
        while True:
            page = self._ddb.query(**kwargs)
            yield from page.get("Items", [])
            if "LastEvaluatedKey" not in page:
                return
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
