output "region" {
  description = "Region everything was deployed to (AWS_REGION for the CLI)."
  value       = local.region
}

output "name_prefix" {
  description = "Name prefix (HYBRID_INGEST_PREFIX for the CLI)."
  value       = var.name_prefix
}

output "stream_name" {
  description = "Kinesis change stream name."
  value       = aws_kinesis_stream.changes.name
}

output "stream_arn" {
  description = "Kinesis change stream ARN."
  value       = aws_kinesis_stream.changes.arn
}

output "registry_table_name" {
  description = "DynamoDB schema registry / table spec table."
  value       = aws_dynamodb_table.this["registry"].name
}

output "state_table_name" {
  description = "DynamoDB checkpoints / watermarks / locks table."
  value       = aws_dynamodb_table.this["state"].name
}

output "runs_table_name" {
  description = "DynamoDB run history table."
  value       = aws_dynamodb_table.this["runs"].name
}

output "lake_bucket_name" {
  description = "Lake bucket (zones landing/, raw/, dlq/, curated/)."
  value       = aws_s3_bucket.lake.id
}

output "lake_uri" {
  description = "Lake root URI (HYBRID_INGEST_LAKE_URI for the CLI)."
  value       = "s3://${aws_s3_bucket.lake.id}"
}

output "scripts_bucket_name" {
  description = "Bucket the build uploads job scripts and the library wheel to."
  value       = aws_s3_bucket.scripts.id
}

output "athena_results_bucket_name" {
  description = "Athena query results bucket."
  value       = aws_s3_bucket.athena_results.id
}

output "curated_database_name" {
  description = "Glue database of the curated tables."
  value       = aws_glue_catalog_database.curated.name
}

output "raw_database_name" {
  description = "Glue database over raw/."
  value       = aws_glue_catalog_database.raw.name
}

output "state_machine_arn" {
  description = "Batch workflow state machine ARN."
  value       = aws_sfn_state_machine.batch.arn
}

output "merge_job_name" {
  description = "Glue compact+merge job."
  value       = aws_glue_job.merge.name
}

output "streaming_job_name" {
  description = "Glue streaming job (Kinesis -> raw/)."
  value       = aws_glue_job.stream.name
}

output "athena_workgroup" {
  description = "Athena workgroup for curated queries."
  value       = aws_athena_workgroup.this.name
}

output "alerts_topic_arn" {
  description = "SNS topic receiving alarms and workflow alerts."
  value       = aws_sns_topic.alerts.arn
}

output "kms_key_arn" {
  description = "Customer managed key encrypting the project's data."
  value       = aws_kms_key.main.arn
}

output "producer_policy_arns" {
  description = "Managed policy of each producer (var.producers), to attach to its on-prem identity."
  value       = { for name, p in aws_iam_policy.producer : name => p.arn }
}

output "workflow_log_group_name" {
  description = "CloudWatch log group of the state machine's execution history."
  value       = aws_cloudwatch_log_group.workflow.name
}

output "datasync_task_arn" {
  description = "DataSync task copying nightly extracts to landing/ (null without an agent)."
  value       = one(aws_datasync_task.extracts[*].arn)
}
