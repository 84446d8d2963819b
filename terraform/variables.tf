# ---------------------------------------------------------------- general

variable "region" {
  type        = string
  description = "AWS region to deploy into (the code's default is eu-west-1)."
  default     = "eu-west-1"
}

variable "name_prefix" {
  type        = string
  description = "Prefix of every physical name; must equal the code's HYBRID_INGEST_PREFIX (default \"hybrid-ingest\")."
  default     = "hybrid-ingest"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{2,30}[a-z0-9]$", var.name_prefix))
    error_message = "name_prefix must be 4-32 lowercase letters, digits or '-', starting with a letter."
  }
}

variable "environment" {
  type        = string
  description = "Deployment environment name (dev, test, prod), used in tags."
  default     = "dev"
}

variable "permissions_boundary_arn" {
  type        = string
  description = "ARN of the permissions boundary every role of this configuration carries (CFN/seed.yaml's PermissionsBoundaryArn output; buildspec.yml passes it): the deploy role may only create and edit roles that carry it."

  validation {
    condition     = can(regex("^arn:aws[a-z-]*:iam::[0-9]{12}:policy/.+$", var.permissions_boundary_arn))
    error_message = "permissions_boundary_arn must be the ARN of an IAM managed policy."
  }
}

variable "deploy_role_arn" {
  type        = string
  description = "ARN of the role that runs terraform (CFN/seed.yaml's CodeBuild role; buildspec.yml passes it). The deploy role holds no KMS rights on keys through IAM: the project key's policy names it as the key's administrator instead. null when an administrator deploys with their own credentials."
  default     = null
}

variable "tags" {
  type        = map(string)
  description = "Extra tags applied to every resource through the provider's default_tags."
  default     = {}
}

# ---------------------------------------------------------------- buckets

variable "lake_bucket_name" {
  type        = string
  description = "Name of the lake bucket (zones landing/, raw/, dlq/, curated/); null means \"<name_prefix>-lake-<account_id>\"."
  default     = null
}

variable "scripts_bucket_name" {
  type        = string
  description = "Name of the bucket holding Glue scripts, the library wheel and Glue temp files; null means \"<name_prefix>-scripts-<account_id>\"."
  default     = null
}

variable "athena_results_bucket_name" {
  type        = string
  description = "Name of the Athena query results bucket; null means \"<name_prefix>-athena-<account_id>\"."
  default     = null
}

variable "force_destroy_buckets" {
  type        = bool
  description = "Allow terraform destroy to delete non-empty buckets (only for throwaway environments)."
  default     = false
}

variable "landing_expiration_days" {
  type        = number
  description = "Days after which bulk extracts in landing/ expire (they are merged within minutes; keep enough to replay)."
  default     = 90
}

variable "raw_transition_ia_days" {
  type        = number
  description = "Days after which raw/ objects move to STANDARD_IA (minimum 30)."
  default     = 30

  validation {
    condition     = var.raw_transition_ia_days >= 30
    error_message = "S3 only transitions to STANDARD_IA after at least 30 days."
  }
}

variable "raw_transition_glacier_days" {
  type        = number
  description = "Days after which raw/ objects move to GLACIER (flexible retrieval)."
  default     = 90
}

variable "raw_expiration_days" {
  type        = number
  description = "Days after which raw/ objects expire; null keeps them forever (raw is the replay log)."
  default     = null
}

variable "dlq_expiration_days" {
  type        = number
  description = "Days after which dead-lettered objects in dlq/ expire."
  default     = 180
}

variable "noncurrent_version_expiration_days" {
  type        = number
  description = "Days a noncurrent (overwritten or deleted) object version is kept in the versioned buckets."
  default     = 30
}

# ---------------------------------------------------------------- producers

variable "producers" {
  type        = map(list(string))
  description = "On-prem producers and the tables each may land extracts for: one managed policy per producer (<name_prefix>-producer-<name>) that writes only landing/<table>/ of its tables; DataSync writes the union of all of them."
  default     = {}

  validation {
    condition     = alltrue([for name in keys(var.producers) : can(regex("^[a-z][a-z0-9-]{0,31}$", name))])
    error_message = "Producer names must be 1-32 lowercase letters, digits or '-', starting with a letter."
  }

  validation {
    condition     = alltrue(flatten([for tables in values(var.producers) : [for t in tables : can(regex("^[a-z][a-z0-9_]{0,62}$", t))]]))
    error_message = "Table names must match [a-z][a-z0-9_]{0,62} (the registry's table-name rule)."
  }
}

variable "registering_producers" {
  type        = set(string)
  description = "Producers (keys of var.producers) that register their own tables' schemas and keep a source record: those running `hybrid-ingest source postgres`, which registers each table from the database's catalog."
  default     = []

  validation {
    condition     = alltrue([for name in var.registering_producers : contains(keys(var.producers), name)])
    error_message = "Every registering producer must be a key of var.producers."
  }
}

# ---------------------------------------------------------------- kinesis

variable "kinesis_stream_mode" {
  type        = string
  description = "Capacity mode of the change stream: ON_DEMAND or PROVISIONED."
  default     = "ON_DEMAND"

  validation {
    condition     = contains(["ON_DEMAND", "PROVISIONED"], var.kinesis_stream_mode)
    error_message = "kinesis_stream_mode must be ON_DEMAND or PROVISIONED."
  }
}

variable "kinesis_shard_count" {
  type        = number
  description = "Number of shards when kinesis_stream_mode is PROVISIONED (ignored for ON_DEMAND)."
  default     = 2

  validation {
    condition     = var.kinesis_shard_count >= 1
    error_message = "kinesis_shard_count must be at least 1."
  }
}

variable "kinesis_retention_hours" {
  type        = number
  description = "Kinesis retention period in hours (24-8760); longer than the longest consumer outage you want to survive."
  default     = 168

  validation {
    condition     = var.kinesis_retention_hours >= 24 && var.kinesis_retention_hours <= 8760
    error_message = "kinesis_retention_hours must be between 24 and 8760."
  }
}

# ---------------------------------------------------------------- glue jobs

variable "release_prefix" {
  type        = string
  description = "Key prefix in the scripts bucket of the release the jobs run (the build uploads to releases/<commit>/); scripts are <prefix>/glue_jobs/... and <prefix>/streaming_consumer/..."
  default     = "releases/current"
}

variable "library_wheel_name" {
  type        = string
  description = "File name of the hybrid-ingest library wheel under <release_prefix>/dist/, given to the jobs with --extra-py-files."
  default     = "hybrid_ingest-0.1.0-py3-none-any.whl"
}

variable "glue_additional_python_modules" {
  type        = list(string)
  description = "Third-party modules pip-installed into both Glue jobs (--additional-python-modules); Glue 5.0 already ships pyspark, pyarrow and boto3."
  default = [
    "fastavro==1.13.1",
    "avro==1.12.2",
    "aws-kinesis-agg==1.2.3",
    "six==1.17.0",
    "cramjam==2.14.0",
    "duckdb==2.0.0",
    "sqlglot==30.30.0",
    "click==8.5.1",
    "pyiceberg==0.12.0",
    "pyiceberg-core==0.11.0",
  ]
}

variable "merge_worker_type" {
  type        = string
  description = "Worker type of the merge job (G.1X, G.2X, G.4X, G.8X)."
  default     = "G.1X"
}

variable "merge_number_of_workers" {
  type        = number
  description = "Default number of workers of the merge job; the workflow may override it per run (engine and capacity are chosen per run)."
  default     = 2

  validation {
    condition     = var.merge_number_of_workers >= 2
    error_message = "A Glue Spark job needs at least 2 workers."
  }
}

variable "merge_execution_class" {
  type        = string
  description = "Execution class of the merge job: STANDARD, or FLEX (spare capacity, cheaper, may start later)."
  default     = "STANDARD"

  validation {
    condition     = contains(["STANDARD", "FLEX"], var.merge_execution_class)
    error_message = "merge_execution_class must be STANDARD or FLEX."
  }
}

variable "merge_max_concurrent_runs" {
  type        = number
  description = "MaxConcurrentRuns of the merge job: one run per table at a time, so at least the workflow's Map concurrency."
  default     = 10
}

variable "workflow_map_concurrency" {
  type        = number
  description = "How many tables the batch workflow merges at once (the state machine's Map MaxConcurrency)."
  default     = 4

  validation {
    condition     = var.workflow_map_concurrency >= 1
    error_message = "workflow_map_concurrency must be at least 1."
  }
}

variable "merge_timeout_minutes" {
  type        = number
  description = "Timeout of one merge job run in minutes."
  default     = 60
}

variable "stream_worker_type" {
  type        = string
  description = "Worker type of the Glue streaming job (G.025X is meant for low-volume streams)."
  default     = "G.1X"
}

variable "stream_number_of_workers" {
  type        = number
  description = "Number of workers of the Glue streaming job."
  default     = 2
}

variable "stream_window_seconds" {
  type        = number
  description = "Micro-batch window of the streaming job in seconds (how often raw files are written)."
  default     = 60
}

variable "stream_starting_position" {
  type        = string
  description = "Where the streaming job starts reading a shard without checkpoint: TRIM_HORIZON or LATEST."
  default     = "TRIM_HORIZON"

  validation {
    condition     = contains(["TRIM_HORIZON", "LATEST"], var.stream_starting_position)
    error_message = "stream_starting_position must be TRIM_HORIZON or LATEST."
  }
}

variable "glue_log_retention_days" {
  type        = number
  description = "Retention of the CloudWatch log groups (Glue, Step Functions, DataSync) in days."
  default     = 365
}

# ---------------------------------------------------------------- network (optional VPC for Glue)

variable "vpc_id" {
  type        = string
  description = "VPC the Glue jobs run in; null runs them without a VPC connection. Required when glue_subnet_id is set."
  default     = null
}

variable "glue_subnet_id" {
  type        = string
  description = "Private subnet of the Glue NETWORK connection; null runs Glue outside a VPC (no endpoints created)."
  default     = null
}

variable "create_vpc_endpoints" {
  type        = bool
  description = "Create VPC endpoints (S3 and DynamoDB gateways; Glue, Kinesis, Logs, Monitoring, STS, KMS interfaces) when Glue runs in a VPC."
  default     = true
}

variable "vpc_endpoint_route_table_ids" {
  type        = list(string)
  description = "Route tables of the Glue subnet, associated with the S3 and DynamoDB gateway endpoints."
  default     = []
}

# ---------------------------------------------------------------- datasync

variable "datasync_agent_activation_key" {
  type        = string
  description = "Activation key of the on-prem DataSync agent VM; null creates no DataSync resources."
  default     = null
  sensitive   = true
}

variable "datasync_nfs_server_hostname" {
  type        = string
  description = "Hostname or IP of the on-prem NFS server exporting the nightly extracts."
  default     = null
}

variable "datasync_nfs_subdirectory" {
  type        = string
  description = "NFS export path holding <table>/<extract_id>/ folders written by the bulk producer."
  default     = "/exports/hybrid-ingest"
}

variable "datasync_schedule_expression" {
  type        = string
  description = "Schedule of the DataSync task (copies nightly extracts to landing/)."
  default     = "cron(0 2 * * ? *)"
}

variable "datasync_bytes_per_second" {
  type        = number
  description = "Bandwidth limit of the DataSync task in bytes per second; -1 is unlimited."
  default     = -1
}

# ---------------------------------------------------------------- orchestration

variable "batch_schedule_expression" {
  type        = string
  description = "EventBridge Scheduler expression that starts the batch workflow."
  default     = "rate(15 minutes)"
}

variable "batch_schedule_timezone" {
  type        = string
  description = "Time zone of batch_schedule_expression (matters for cron expressions)."
  default     = "UTC"
}

variable "batch_schedule_enabled" {
  type        = bool
  description = "Whether the periodic batch schedule is enabled."
  default     = true
}

variable "manifest_trigger_enabled" {
  type        = bool
  description = "Whether a new landing/<table>/<extract_id>/_manifest.json starts the batch workflow."
  default     = true
}

# ---------------------------------------------------------------- query

variable "athena_bytes_scanned_cutoff" {
  type        = number
  description = "Per-query bytes scanned limit of the Athena workgroup (minimum 10 MB)."
  default     = 107374182400

  validation {
    condition     = var.athena_bytes_scanned_cutoff >= 10485760
    error_message = "Athena's bytes scanned cutoff must be at least 10 MB."
  }
}

variable "athena_results_expiration_days" {
  type        = number
  description = "Days after which Athena query results expire."
  default     = 30
}

variable "raw_table_columns" {
  type = list(object({
    name = string
    type = string
  }))
  description = "Columns of the raw change-event Parquet files exposed by the raw catalog table (Hive types)."
  default = [
    { name = "op", type = "string" },
    { name = "seq", type = "bigint" },
    { name = "ts", type = "timestamp" },
    { name = "shard_id", type = "string" },
    { name = "sequence_number", type = "string" },
    { name = "sub_sequence_number", type = "bigint" },
    { name = "arrival_ts", type = "timestamp" },
    { name = "row_json", type = "string" },
  ]
}

variable "raw_projection_start_date" {
  type        = string
  description = "First ingest_date (YYYY-MM-DD) of the raw table's partition projection."
  default     = "2024-01-01"
}

# ---------------------------------------------------------------- monitoring

variable "alarm_email_addresses" {
  type        = list(string)
  description = "E-mail addresses subscribed to the alerts topic (each must confirm)."
  default     = []
}

variable "iterator_age_alarm_threshold_ms" {
  type        = number
  description = "Alarm when the oldest unread Kinesis record is older than this (milliseconds)."
  default     = 300000
}

variable "freshness_alarm_threshold_seconds" {
  type        = number
  description = "Alarm when a curated table is older than this (the FreshnessSeconds metric, seconds)."
  default     = 3600
}

variable "dlq_alarm_threshold" {
  type        = number
  description = "Alarm when more than this many records are dead-lettered within 5 minutes."
  default     = 0
}

variable "manage_catalog_encryption" {
  type        = bool
  description = "Set the account/region-wide Glue Data Catalog encryption to this project's key (a singleton: disable if another stack owns it)."
  default     = false
}
