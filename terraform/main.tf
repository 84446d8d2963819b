# hybrid-ingest: streaming-plus-batch ingest into an S3 data lake (see docs/DESIGN.md).
#
# Files per concern: kms.tf, s3.tf, kinesis.tf, dynamodb.tf, glue_catalog.tf,
# glue_jobs.tf, athena.tf, datasync.tf, monitoring.tf, iam.tf, network.tf,
# scheduler.tf; stepfunctions.tf + workflow.asl.json.tpl hold the batch workflow.
# Physical names follow hybrid_ingest.config.Names (tests/infra checks they agree).

provider "aws" {
  region = var.region

  default_tags {
    tags = merge(var.tags, local.project_tags)
  }
}

# The project key is created through this provider, with exactly
# local.project_tags: the deploy role may create a KMS key only with those
# tags (CFN/seed.yaml, CreateTheProjectKey), whatever var.tags holds.
provider "aws" {
  alias  = "project_key"
  region = var.region
}

data "aws_caller_identity" "current" {}

data "aws_partition" "current" {}

data "aws_region" "current" {}

locals {
  # Tags on every resource; CFN/seed.yaml's deploy policies match Project and
  # Environment when they scope by tag (KMS key creation, EC2, DataSync).
  project_tags = {
    Project     = "hybrid-ingest"
    Environment = var.environment
    ManagedBy   = "terraform"
  }

  account_id = data.aws_caller_identity.current.account_id
  partition  = data.aws_partition.current.partition
  region     = data.aws_region.current.name

  # The Glue catalog forbids "-" in database names.
  db_prefix = replace(var.name_prefix, "-", "_")

  names = {
    stream           = "${var.name_prefix}-changes"
    registry_table   = "${var.name_prefix}-registry"
    state_table      = "${var.name_prefix}-state"
    runs_table       = "${var.name_prefix}-runs"
    curated_database = "${local.db_prefix}_curated"
    raw_database     = "${local.db_prefix}_raw"
    state_machine    = "${var.name_prefix}-batch"
    merge_job        = "${var.name_prefix}-merge"
    streaming_job    = "${var.name_prefix}-stream"
    alerts_topic     = "${var.name_prefix}-alerts"
    athena_workgroup = var.name_prefix
  }

  # CloudWatch namespace the code publishes custom metrics to (DlqRecords, FreshnessSeconds, ...).
  metrics_namespace = "HybridIngest"
  # Dimension naming the table on per-table custom metrics (dashboard breakdown).
  metrics_table_dimension = "Table"

  lake_bucket_name    = coalesce(var.lake_bucket_name, "${var.name_prefix}-lake-${local.account_id}")
  scripts_bucket_name = coalesce(var.scripts_bucket_name, "${var.name_prefix}-scripts-${local.account_id}")
  athena_bucket_name  = coalesce(var.athena_results_bucket_name, "${var.name_prefix}-athena-${local.account_id}")
  access_logs_bucket  = "${var.name_prefix}-access-logs-${local.account_id}"

  # Lake zones: prefixes of one bucket (DESIGN.md "Lake layout").
  zones = {
    landing = "landing/"
    raw     = "raw/"
    dlq     = "dlq/"
    curated = "curated/"
  }
  # Spark structured-streaming checkpoints of the Glue streaming job (not a data zone).
  checkpoint_prefix = "_checkpoints/"

  lake_uri    = "s3://${local.lake_bucket_name}"
  scripts_uri = "s3://${local.scripts_bucket_name}"

  # Everything the build uploads lives under one immutable release prefix (buildspec.yml).
  release_uri       = "${local.scripts_uri}/${trim(var.release_prefix, "/")}"
  library_wheel_uri = "${local.release_uri}/dist/${var.library_wheel_name}"

  glue_in_vpc = var.glue_subnet_id != null

  # ARN patterns of this configuration's alarms, event rules and schedules: the
  # services acting on their behalf are told apart by aws:SourceArn in the
  # topic and key policies (patterns by name, as the key cannot depend on them).
  alarm_arns      = "arn:${local.partition}:cloudwatch:${local.region}:${local.account_id}:alarm:${var.name_prefix}-*"
  event_rule_arns = "arn:${local.partition}:events:${local.region}:${local.account_id}:rule/${var.name_prefix}-*"
  schedule_arns   = "arn:${local.partition}:scheduler:${local.region}:${local.account_id}:schedule/${var.name_prefix}/*"
}
