"""Leases: a shard's consumer, the batch run lock; owner, expiry and a fencing token.

Items ``lease#<name>`` / ``lease`` of the state table (``hybrid_ingest.state``).
Taking, renewing and releasing are conditional writes, so two workers can never
both hold one lease, and the token lets every write made under a lease refuse
a former owner that wakes up late.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from hybrid_ingest.errors import LeaseHeldError
from hybrid_ingest.state_table import StateTable, condition_failed


@dataclass(frozen=True)
class Lease:
    name: str
    owner: str
    expires: float
    token: int


class LeaseState(StateTable):
    """``acquire``, ``renew``, ``release`` and read leases."""

    def acquire(self, name: str, owner: str, ttl_seconds: float) -> Lease:
        """Take a lease if free, expired or already ours; raise LeaseHeldError otherwise.

        ``token`` grows on every change of owner, so writes fenced by an old token fail
        even if a paused former owner wakes up believing it still holds the lease.
        """
        now = self._clock()
        item = self._lease_item(name)
        token = 1
        if item is not None:
            token = int(item["token"]["N"]) + (0 if item.get("owner", {}).get("S") == owner else 1)
        expires = now + ttl_seconds
        try:
            self._ddb.put_item(
                TableName=self._state,
                Item={
                    "pk": {"S": f"lease#{name}"}, "sk": {"S": "lease"},
                    "owner": {"S": owner}, "expires": {"N": repr(expires)}, "token": {"N": str(token)},
                },
                ConditionExpression="attribute_not_exists(pk) OR expires < :now OR #o = :o",
                ExpressionAttributeNames={"#o": "owner"},
                ExpressionAttributeValues={":now": {"N": repr(now)}, ":o": {"S": owner}},
            )
        except ClientError as exc:
            if condition_failed(exc):
                holder = self.lease(name)
                who = f"{holder.owner} until {holder.expires:.0f}" if holder else "someone"
                raise LeaseHeldError(f"lease {name!r} is held by {who}") from exc
            raise
        return Lease(name, owner, expires, token)

    def renew(self, lease: Lease, ttl_seconds: float) -> Lease:
        """Extend a lease we still hold; LeaseHeldError if it was taken over."""
        expires = self._clock() + ttl_seconds
        try:
            self._ddb.update_item(
                TableName=self._state,
                Key={"pk": {"S": f"lease#{lease.name}"}, "sk": {"S": "lease"}},
                UpdateExpression="SET expires = :e",
                ConditionExpression="#o = :o AND #t = :t",
                ExpressionAttributeNames={"#o": "owner", "#t": "token"},
                ExpressionAttributeValues={
                    ":e": {"N": repr(expires)}, ":o": {"S": lease.owner}, ":t": {"N": str(lease.token)},
                },
            )
        except ClientError as exc:
            if condition_failed(exc):
                raise LeaseHeldError(f"lease {lease.name!r} was lost by {lease.owner}") from exc
            raise
        return Lease(lease.name, lease.owner, expires, lease.token)

    def release(self, lease: Lease) -> bool:
        """Give a lease back; False if it was no longer ours (nothing to release).

        The item stays, without an owner and already expired, so its token keeps
        growing across owners: a token that restarted at 1 would be refused by the
        checkpoints an earlier owner fenced with a higher one.
        """
        try:
            self._ddb.update_item(
                TableName=self._state,
                Key={"pk": {"S": f"lease#{lease.name}"}, "sk": {"S": "lease"}},
                UpdateExpression="REMOVE #o SET expires = :zero",
                ConditionExpression="#o = :o AND #t = :t",
                ExpressionAttributeNames={"#o": "owner", "#t": "token"},
                ExpressionAttributeValues={
                    ":o": {"S": lease.owner}, ":t": {"N": str(lease.token)}, ":zero": {"N": "0"},
                },
            )
        except ClientError as exc:
            if condition_failed(exc):
                return False
            raise
        return True

    def _lease_item(self, name: str) -> dict[str, Any] | None:
        return self._ddb.get_item(
            TableName=self._state, Key={"pk": {"S": f"lease#{name}"}, "sk": {"S": "lease"}}, ConsistentRead=True
        ).get("Item")

    def lease(self, name: str) -> Lease | None:
        """The current holder (possibly expired), or None if never taken or released."""
        item = self._lease_item(name)
        if item is None or "owner" not in item:
            return None
        return Lease(name, item["owner"]["S"], float(item["expires"]["N"]), int(item["token"]["N"]))

    def leases(self, prefix: str) -> list[Lease]:
        page = self._ddb.scan(
            TableName=self._state,
            FilterExpression="begins_with(pk, :p)",
            ExpressionAttributeValues={":p": {"S": f"lease#{prefix}"}},
            ConsistentRead=True,
        )
        return [
            Lease(i["pk"]["S"].removeprefix("lease#"), i["owner"]["S"], float(i["expires"]["N"]),
                  int(i["token"]["N"]))
            for i in page.get("Items", []) if "owner" in i
        ]
