"""The stream consumer's state: each shard's durable checkpoint and its running counts.

Items ``checkpoint#<stream>`` / ``<shard>`` and ``consumer#<stream>`` / ``<shard>``
of the state table (``hybrid_ingest.state``). A checkpoint only moves forward,
fenced by the writer's lease token, so a worker that lost its shard can never
move it back or past its new owner.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from botocore.exceptions import ClientError

from hybrid_ingest.errors import ConditionFailedError
from hybrid_ingest.position import Position
from hybrid_ingest.state_leases import Lease
from hybrid_ingest.state_table import StateTable, condition_failed


class StreamState(StateTable):
    """Shard checkpoints (``set_checkpoint``, ``finish_shard``) and consumer stats (``put_consumer_stats``)."""

    def checkpoints(self, stream: str) -> dict[str, Position]:
        result: dict[str, Position] = {}
        kwargs: dict[str, Any] = {
            "TableName": self._state,
            "KeyConditionExpression": "pk = :pk",
            "ExpressionAttributeValues": {":pk": {"S": f"checkpoint#{stream}"}},
            "ConsistentRead": True,
        }
        for item in self._query(kwargs):
            result[item["sk"]["S"]] = Position.parse(item["position"]["S"])
        return result

    def checkpoint(self, stream: str, shard: str) -> Position | None:
        item = self._ddb.get_item(
            TableName=self._state, Key={"pk": {"S": f"checkpoint#{stream}"}, "sk": {"S": shard}},
            ConsistentRead=True,
        ).get("Item")
        return Position.parse(item["position"]["S"]) if item else None

    def set_checkpoint(self, stream: str, shard: str, position: Position, lease: Lease | None = None,
                       finished: bool = False) -> None:
        """Move a shard's checkpoint forward; refused if it would go back or the lease was lost."""
        condition = "(attribute_not_exists(pk) OR #p < :p)"
        values: dict[str, Any] = {":p": {"S": str(position)}}
        if lease is not None:
            condition += " AND (attribute_not_exists(lease_token) OR lease_token <= :token)"
            values[":token"] = {"N": str(lease.token)}
        item: dict[str, Any] = {
            "pk": {"S": f"checkpoint#{stream}"},
            "sk": {"S": shard},
            "position": {"S": str(position)},
            "finished": {"BOOL": finished},
            "updated": {"N": repr(self._clock())},
        }
        if lease is not None:
            item["lease_token"] = {"N": str(lease.token)}
        try:
            self._ddb.put_item(
                TableName=self._state, Item=item,
                ConditionExpression=condition,
                ExpressionAttributeNames={"#p": "position"},
                ExpressionAttributeValues=values,
            )
        except ClientError as exc:
            if condition_failed(exc):
                raise ConditionFailedError(
                    f"checkpoint of {shard} not moved to {position}: behind the stored one or lease lost"
                ) from exc
            raise

    def finished_shards(self, stream: str) -> set[str]:
        kwargs: dict[str, Any] = {
            "TableName": self._state,
            "KeyConditionExpression": "pk = :pk",
            "FilterExpression": "finished = :t",
            "ExpressionAttributeValues": {":pk": {"S": f"checkpoint#{stream}"}, ":t": {"BOOL": True}},
            "ConsistentRead": True,
        }
        return {item["sk"]["S"] for item in self._query(kwargs)}

    def finish_shard(self, stream: str, shard: str, lease: Lease | None = None) -> None:
        """Mark a closed shard finished without moving its checkpoint (its children may start).

        Needed when the last flush already checkpointed the shard's end, or the shard held
        no records at all; fenced by the lease token like ``set_checkpoint``.
        """
        values: dict[str, Any] = {
            ":t": {"BOOL": True}, ":now": {"N": repr(self._clock())},
            ":p": {"S": str(Position(0))},
        }
        update = "SET finished = :t, updated = :now, #p = if_not_exists(#p, :p)"
        condition = None
        if lease is not None:
            condition = "attribute_not_exists(lease_token) OR lease_token <= :token"
            values[":token"] = {"N": str(lease.token)}
        kwargs: dict[str, Any] = {
            "TableName": self._state, "Key": {"pk": {"S": f"checkpoint#{stream}"}, "sk": {"S": shard}},
            "UpdateExpression": update, "ExpressionAttributeNames": {"#p": "position"},
            "ExpressionAttributeValues": values,
        }
        if condition:
            kwargs["ConditionExpression"] = condition
        try:
            self._ddb.update_item(**kwargs)
        except ClientError as exc:
            if condition_failed(exc):
                raise ConditionFailedError(f"shard {shard} not marked finished: lease lost") from exc
            raise

    def put_consumer_stats(self, stream: str, shard: str, *, lag_ms: int, owner: str,
                           increments: Mapping[str, int]) -> None:
        """Add a flush's counts to a shard's running totals and record its current lag.

        Counters are added server-side (``ADD``), so totals survive restarts and owner changes.
        """
        names = {"#owner": "owner"}
        values: dict[str, Any] = {
            ":lag": {"N": str(int(lag_ms))}, ":owner": {"S": owner}, ":now": {"N": repr(self._clock())},
        }
        adds = []
        for index, (name, value) in enumerate(sorted(increments.items())):
            names[f"#c{index}"] = name
            values[f":c{index}"] = {"N": str(int(value))}
            adds.append(f"#c{index} :c{index}")
        update = "SET lag_ms = :lag, #owner = :owner, updated = :now"
        if adds:
            update += " ADD " + ", ".join(adds)
        self._ddb.update_item(
            TableName=self._state, Key={"pk": {"S": f"consumer#{stream}"}, "sk": {"S": shard}},
            UpdateExpression=update, ExpressionAttributeNames=names, ExpressionAttributeValues=values,
        )

    def consumer_stats(self, stream: str) -> dict[str, dict[str, Any]]:
        """Per shard: ``lag_ms``, ``owner``, ``updated`` (epoch seconds) and the counters added so far."""
        result: dict[str, dict[str, Any]] = {}
        kwargs: dict[str, Any] = {
            "TableName": self._state,
            "KeyConditionExpression": "pk = :pk",
            "ExpressionAttributeValues": {":pk": {"S": f"consumer#{stream}"}},
            "ConsistentRead": True,
        }
        for item in self._query(kwargs):
            stats: dict[str, Any] = {}
            for key, value in item.items():
                if key in ("pk", "sk"):
                    continue
                if "N" in value:
                    number = float(value["N"])
                    stats[key] = int(number) if key != "updated" else number
                elif "S" in value:
                    stats[key] = value["S"]
            result[item["sk"]["S"]] = stats
        return result
