# The change stream: one user record per change event (Avro single-object
# encoding), many per Kinesis record (KPL aggregation); partition key = table +
# primary key, so one key's events stay on one shard.

resource "aws_kinesis_stream" "changes" {
  name             = local.names.stream
  retention_period = var.kinesis_retention_hours
  shard_count      = var.kinesis_stream_mode == "PROVISIONED" ? var.kinesis_shard_count : null

  stream_mode_details {
    stream_mode = var.kinesis_stream_mode
  }

  encryption_type = "KMS"
  kms_key_id      = aws_kms_key.main.arn

  shard_level_metrics = [
    "IncomingBytes",
    "IncomingRecords",
    "IteratorAgeMilliseconds",
    "OutgoingRecords",
    "ReadProvisionedThroughputExceeded",
    "WriteProvisionedThroughputExceeded",
  ]
}
