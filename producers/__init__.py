"""On-prem side of hybrid-ingest: change-event producer, durable spool, Kafka bridge, bulk extracts."""

from producers.producer import ChangeEventProducer, ProducerConfig, RecordProducer, encode_event
from producers.routing import ShardMap, partition_key

__all__ = ["ChangeEventProducer", "ProducerConfig", "RecordProducer", "ShardMap", "encode_event",
           "partition_key"]
