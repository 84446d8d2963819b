"""Every error the service raises on purpose.

One module, so callers can catch ``HybridIngestError`` at a boundary (the CLI, a
Glue entry script, a Step Functions task) and turn it into a clear message and an
exit code, and so the dead-letter writer can record a stable ``reason`` slug.
"""

from __future__ import annotations


class HybridIngestError(Exception):
    """Base of all deliberate errors. ``reason`` is a short slug used in dlq/ paths and metrics."""

    reason = "error"
    exit_code = 1


class ConfigError(HybridIngestError):
    """The service is not set up as the command needs (no local stack, missing setting)."""

    reason = "config"


class NotBuiltError(HybridIngestError):
    """A command exists in the contract but no component implements it yet."""

    reason = "not-built"
    exit_code = 2


class SpecError(HybridIngestError):
    """A table spec or Avro schema file is malformed or inconsistent with itself."""

    reason = "bad-spec"


class SchemaIncompatibleError(HybridIngestError):
    """A schema evolution breaks the table's compatibility mode."""

    reason = "incompatible-schema"

    def __init__(self, table: str, mode: str, problems: list[str]) -> None:
        self.table = table
        self.mode = mode
        self.problems = problems
        super().__init__(
            f"schema for table {table!r} refused under {mode} compatibility: " + "; ".join(problems)
        )


class UnknownTableError(HybridIngestError):
    """A table name that is not registered."""

    reason = "unknown-table"


class WireFormatError(HybridIngestError):
    """Bytes that are not a valid single-object-encoded Avro change event."""

    reason = "bad-wire-format"


class UnknownFingerprintError(WireFormatError):
    """A well-formed record whose schema fingerprint the registry does not know."""

    reason = "unknown-fingerprint"


class ValidationError(HybridIngestError):
    """A change event or row that does not satisfy its table's schema."""

    reason = "invalid-row"


class RecordTooLargeError(ValidationError):
    """An encoded event larger than a Kinesis record may hold."""

    reason = "oversize-record"


class ManifestError(HybridIngestError):
    """A landed bulk extract whose manifest is missing, malformed or does not match its parts."""

    reason = "bad-manifest"


class DuplicateKeyError(ValidationError):
    """A bulk extract that holds two rows of one primary key: no rule could say which one is the source's."""

    reason = "duplicate-keys"


class SuspiciousExtractError(HybridIngestError):
    """A landed extract the merge holds until released: it would delete most of its table, or its
    ``as_of_seq`` is far ahead of anything the table has seen (``glue_jobs.guard``)."""

    reason = "suspicious-extract"


class SourceError(HybridIngestError):
    """A change source (a Kafka cluster, a PostgreSQL database) cannot be reached, refuses us, lacks what was
    asked for, or sent a table or change that cannot be captured exactly."""

    reason = "source"


class SpoolFullError(HybridIngestError):
    """The producer's on-disk spool reached its size limit: refuse rather than drop."""

    reason = "spool-full"


class ConditionFailedError(HybridIngestError):
    """A compare-and-set in the state store lost: someone else moved the value first."""

    reason = "condition-failed"


class LeaseHeldError(ConditionFailedError):
    """A lease or lock is held by another owner and has not expired."""

    reason = "lease-held"


class QueryError(HybridIngestError):
    """A user's SQL failed to parse, transpile or run."""

    reason = "query"


class MergeError(HybridIngestError):
    """A merge run could not complete; nothing it did is visible to readers."""

    reason = "merge"


class CommitConflictError(MergeError):
    """A merge's Iceberg commit lost: the table changed since the run read it; nothing was published."""

    reason = "commit-conflict"


class SpoolCorruptError(HybridIngestError):
    """A producer spool segment fails its CRC check before its end (disk damage, not a torn write)."""

    reason = "spool-corrupt"


class WorkflowError(HybridIngestError):
    """The batch workflow could not be started or did not end in time (not a merge failure: that is its outcome)."""

    reason = "workflow"


class ShardsUnreadableError(HybridIngestError):
    """``consume --until-idle`` could not read every shard: others still hold them past its deadline."""

    reason = "shards-unreadable"
