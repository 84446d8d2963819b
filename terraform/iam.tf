# Least-privilege roles. Every allowed action is named (no "*" or "service:*"),
# and every resource comes from another resource's attributes. The only
# `resources = ["*"]` are for actions AWS does not scope to resources
# (cloudwatch:PutMetricData, which is narrowed by namespace instead; the
# CloudWatch Logs delivery and X-Ray actions of Step Functions; EC2 Describe*
# for Glue in a VPC). Every role carries the deploy stack's permissions
# boundary (var.permissions_boundary_arn), and every trust policy names the
# account and the resources that may assume the role (aws:SourceAccount and
# aws:SourceArn). tests/infra (infra_checks.py, terraform_security.py) enforces
# these rules.

locals {
  arn_prefix = "arn:${local.partition}"

  glue_catalog_arn        = "${local.arn_prefix}:glue:${local.region}:${local.account_id}:catalog"
  glue_curated_db_arn     = "${local.arn_prefix}:glue:${local.region}:${local.account_id}:database/${aws_glue_catalog_database.curated.name}"
  glue_curated_tables_arn = "${local.arn_prefix}:glue:${local.region}:${local.account_id}:table/${aws_glue_catalog_database.curated.name}/*"
  glue_raw_db_arn         = "${local.arn_prefix}:glue:${local.region}:${local.account_id}:database/${aws_glue_catalog_database.raw.name}"
  glue_raw_tables_arn     = "${local.arn_prefix}:glue:${local.region}:${local.account_id}:table/${aws_glue_catalog_database.raw.name}/*"
  glue_merge_job_arn      = "${local.arn_prefix}:glue:${local.region}:${local.account_id}:job/${aws_glue_job.merge.name}"
  glue_log_groups_arn     = "${local.arn_prefix}:logs:${local.region}:${local.account_id}:log-group:/aws-glue/*"

  dynamodb_arns = { for k, t in aws_dynamodb_table.this : k => t.arn }

  kms_data_actions = ["kms:Decrypt", "kms:Encrypt", "kms:GenerateDataKey", "kms:DescribeKey"]

  s3_object_read  = ["s3:GetObject", "s3:GetObjectVersion", "s3:GetObjectTagging"]
  s3_object_write = ["s3:PutObject", "s3:AbortMultipartUpload", "s3:ListMultipartUploadParts"]

  # Dead letters are written per stage: dlq/<stage>/<reason>/... (hybrid_ingest.layout.dlq_file).
  dlq_stream = "${local.zones.dlq}stream/"       # streaming_consumer.sink.DLQ_STAGE
  dlq_merge  = "${local.zones.dlq}merge/"        # glue_jobs.inputs.DLQ_STAGE
  dlq_bridge = "${local.zones.dlq}kafka-bridge/" # producers.kafka_bridge.DLQ_STAGE

  # A curated table is an Iceberg table located at curated/<table>/: pyiceberg's
  # data/ and metadata/ folders, and the merge's tombstone files
  # (hybrid_ingest.layout.TOMBSTONES) beside them.
  curated_table_folders = ["data/", "metadata/", "tombstones/"]
  curated_table_objects = [for f in local.curated_table_folders : "${aws_s3_bucket.lake.arn}/${local.zones.curated}*/${f}*"]

  # Tables each producer (and DataSync, for all of them) may land extracts for.
  landing_tables = sort(distinct(flatten(values(var.producers))))

  # Who may assume each service role: the service, for this account, on behalf
  # of these resources only. Step Functions, Scheduler and EventBridge name the
  # state machine, schedule group and rule that assume; Glue and DataSync name
  # the job or task, for which AWS documents the region-and-account pattern.
  trusted_sources = {
    glue      = ["${local.arn_prefix}:glue:${local.region}:${local.account_id}:*"]
    states    = ["${local.arn_prefix}:states:${local.region}:${local.account_id}:stateMachine:${local.names.state_machine}"]
    scheduler = [aws_scheduler_schedule_group.this.arn]
    events    = [aws_cloudwatch_event_rule.manifest_landed.arn]
    datasync  = ["${local.arn_prefix}:datasync:${local.region}:${local.account_id}:*"]
  }
}

# ================================================================ shared statements

data "aws_iam_policy_document" "glue_common" {
  statement {
    sid       = "ReadRelease"
    actions   = local.s3_object_read
    resources = ["${aws_s3_bucket.scripts.arn}/releases/*"]
  }

  statement {
    sid       = "GlueTempAndSparkUi"
    actions   = concat(local.s3_object_read, local.s3_object_write, ["s3:DeleteObject"])
    resources = ["${aws_s3_bucket.scripts.arn}/temp/*", "${aws_s3_bucket.scripts.arn}/spark-logs/*"]
  }

  statement {
    sid       = "ListScripts"
    actions   = ["s3:ListBucket", "s3:GetBucketLocation"]
    resources = [aws_s3_bucket.scripts.arn]
  }

  statement {
    sid       = "UseProjectKey"
    actions   = local.kms_data_actions
    resources = [aws_kms_key.main.arn]
  }

  statement {
    sid       = "GlueLogs"
    actions   = ["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents", "logs:AssociateKmsKey"]
    resources = [local.glue_log_groups_arn, "${local.glue_log_groups_arn}:log-stream:*"]
  }

  statement {
    sid       = "Metrics"
    actions   = ["cloudwatch:PutMetricData"]
    resources = ["*"]

    condition {
      test     = "StringEquals"
      variable = "cloudwatch:namespace"
      values   = [local.metrics_namespace, "Glue"]
    }
  }

  statement {
    sid       = "ReadSecurityConfiguration"
    actions   = ["glue:GetSecurityConfiguration"]
    resources = ["*"]
  }

  dynamic "statement" {
    for_each = local.glue_in_vpc ? [1] : []
    content {
      sid = "GlueVpcDescribe"
      actions = [
        "ec2:DescribeNetworkInterfaces",
        "ec2:DescribeRouteTables",
        "ec2:DescribeSecurityGroups",
        "ec2:DescribeSubnets",
        "ec2:DescribeVpcAttribute",
        "ec2:DescribeVpcEndpoints",
      ]
      resources = ["*"]
    }
  }

  dynamic "statement" {
    for_each = local.glue_in_vpc ? [1] : []
    content {
      sid     = "GlueVpcNetworkInterfaces"
      actions = ["ec2:CreateNetworkInterface", "ec2:DeleteNetworkInterface", "ec2:CreateTags", "ec2:DeleteTags"]
      resources = [
        "${local.arn_prefix}:ec2:${local.region}:${local.account_id}:network-interface/*",
        data.aws_subnet.glue[0].arn,
        aws_security_group.glue[0].arn,
      ]
    }
  }

  dynamic "statement" {
    for_each = local.glue_in_vpc ? [1] : []
    content {
      sid       = "GlueVpcConnection"
      actions   = ["glue:GetConnection"]
      resources = [local.glue_catalog_arn, aws_glue_connection.network[0].arn]
    }
  }
}

# Trust policies: each service may assume its role only on behalf of this
# account and of the resources in local.trusted_sources (confused deputy).
data "aws_iam_policy_document" "assume" {
  for_each = local.trusted_sources

  statement {
    actions = ["sts:AssumeRole"]

    principals {
      type        = "Service"
      identifiers = ["${each.key}.amazonaws.com"]
    }

    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }

    condition {
      test     = "ArnLike"
      variable = "aws:SourceArn"
      values   = each.value
    }
  }
}

# ================================================================ Glue streaming job

resource "aws_iam_role" "glue_stream" {
  name                 = "${var.name_prefix}-glue-stream"
  description          = "Glue streaming job ${local.names.streaming_job}: Kinesis -> raw/"
  assume_role_policy   = data.aws_iam_policy_document.assume["glue"].json
  permissions_boundary = var.permissions_boundary_arn
}

data "aws_iam_policy_document" "glue_stream" {
  source_policy_documents = [data.aws_iam_policy_document.glue_common.json]

  statement {
    sid = "ReadChangeStream"
    actions = [
      "kinesis:DescribeStream",
      "kinesis:DescribeStreamSummary",
      "kinesis:GetRecords",
      "kinesis:GetShardIterator",
      "kinesis:ListShards",
    ]
    resources = [aws_kinesis_stream.changes.arn]
  }

  statement {
    sid       = "WriteRawDlqCheckpoints"
    actions   = concat(local.s3_object_read, local.s3_object_write)
    resources = [for p in [local.zones.raw, local.dlq_stream, local.checkpoint_prefix] : "${aws_s3_bucket.lake.arn}/${p}*"]
  }

  statement {
    sid       = "RewriteCheckpoints"
    actions   = ["s3:DeleteObject"]
    resources = ["${aws_s3_bucket.lake.arn}/${local.checkpoint_prefix}*"]
  }

  statement {
    sid       = "ListLakeZones"
    actions   = ["s3:ListBucket"]
    resources = [aws_s3_bucket.lake.arn]

    condition {
      test     = "StringLike"
      variable = "s3:prefix"
      values   = [for p in [local.zones.raw, local.dlq_stream, local.checkpoint_prefix] : "${p}*"]
    }
  }

  statement {
    sid       = "LakeBucketLocation"
    actions   = ["s3:GetBucketLocation"]
    resources = [aws_s3_bucket.lake.arn]
  }

  statement {
    sid       = "Checkpoints"
    actions   = ["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem", "dynamodb:Query", "dynamodb:ConditionCheckItem"]
    resources = [local.dynamodb_arns.state]
  }

  statement {
    sid       = "ReadRegistry"
    actions   = ["dynamodb:GetItem", "dynamodb:BatchGetItem", "dynamodb:Query"]
    resources = [local.dynamodb_arns.registry]
  }

  statement {
    sid       = "ReadRawCatalog"
    actions   = ["glue:GetDatabase", "glue:GetTable", "glue:GetTables"]
    resources = [local.glue_catalog_arn, local.glue_raw_db_arn, local.glue_raw_tables_arn]
  }
}

resource "aws_iam_role_policy" "glue_stream" {
  name   = "stream-to-raw"
  role   = aws_iam_role.glue_stream.id
  policy = data.aws_iam_policy_document.glue_stream.json
}

# ================================================================ Glue merge job

resource "aws_iam_role" "glue_merge" {
  name                 = "${var.name_prefix}-glue-merge"
  description          = "Glue jobs ${local.names.merge_job} and plan: raw + landing -> curated Iceberg tables, watermarks"
  assume_role_policy   = data.aws_iam_policy_document.assume["glue"].json
  permissions_boundary = var.permissions_boundary_arn
}

# The merge reads raw/ and landing/ and never writes either: an extract whose
# manifest does not verify stays where it landed and gets a dead-letter record
# under dlq/merge/ (glue_jobs/inputs.py), which is also what keeps it from being
# verified again. Curated tables are Iceberg tables committed through the Glue
# catalog: pyiceberg creates a table (CreateTable), and commits a snapshot by
# UpdateTable with the VersionId it read (Glue refuses the update if the table
# moved since: the optimistic, fenced commit). Snapshot expiry and orphan-file
# removal delete data and metadata files; tables are never dropped
# (no DeleteTable), and nothing uses catalog partitions any more.
data "aws_iam_policy_document" "glue_merge" {
  source_policy_documents = [data.aws_iam_policy_document.glue_common.json]

  statement {
    sid       = "ReadInputs"
    actions   = local.s3_object_read
    resources = [for p in [local.zones.raw, local.zones.landing] : "${aws_s3_bucket.lake.arn}/${p}*"]
  }

  statement {
    sid       = "DeadLetterBadExtracts"
    actions   = concat(local.s3_object_read, local.s3_object_write)
    resources = ["${aws_s3_bucket.lake.arn}/${local.dlq_merge}*"]
  }

  statement {
    sid       = "IcebergDataAndMetadata"
    actions   = concat(local.s3_object_read, local.s3_object_write, ["s3:DeleteObject"])
    resources = local.curated_table_objects
  }

  statement {
    sid       = "ListLakeZones"
    actions   = ["s3:ListBucket"]
    resources = [aws_s3_bucket.lake.arn]

    condition {
      test     = "StringLike"
      variable = "s3:prefix"
      values   = [for p in [local.zones.raw, local.zones.landing, local.zones.curated, local.dlq_merge] : "${p}*"]
    }
  }

  statement {
    sid       = "LakeBucketLocation"
    actions   = ["s3:GetBucketLocation"]
    resources = [aws_s3_bucket.lake.arn]
  }

  statement {
    sid = "WatermarksLocksRuns"
    actions = [
      "dynamodb:GetItem",
      "dynamodb:PutItem",
      "dynamodb:UpdateItem",
      "dynamodb:DeleteItem",
      "dynamodb:Query",
      "dynamodb:ConditionCheckItem",
    ]
    resources = [local.dynamodb_arns.state, local.dynamodb_arns.runs]
  }

  statement {
    sid       = "ReadRegistry"
    actions   = ["dynamodb:GetItem", "dynamodb:BatchGetItem", "dynamodb:Query", "dynamodb:Scan"]
    resources = [local.dynamodb_arns.registry]
  }

  statement {
    sid = "IcebergCatalog"
    actions = [
      "glue:GetDatabase",
      "glue:GetTable",
      "glue:GetTables",
      "glue:CreateTable",
      "glue:UpdateTable",
    ]
    resources = [local.glue_catalog_arn, local.glue_curated_db_arn, local.glue_curated_tables_arn]
  }
}

resource "aws_iam_role_policy" "glue_merge" {
  name   = "merge-to-curated"
  role   = aws_iam_role.glue_merge.id
  policy = data.aws_iam_policy_document.glue_merge.json
}

# ================================================================ Step Functions workflow

resource "aws_iam_role" "workflow" {
  name                 = "${var.name_prefix}-workflow"
  description          = "State machine ${local.names.state_machine}: lock, merge every table, commit, unlock, alert"
  assume_role_policy   = data.aws_iam_policy_document.assume["states"].json
  permissions_boundary = var.permissions_boundary_arn
}

data "aws_iam_policy_document" "workflow" {
  statement {
    sid       = "RunMergeJob"
    actions   = ["glue:StartJobRun", "glue:GetJobRun", "glue:GetJobRuns", "glue:BatchStopJobRun"]
    resources = [local.glue_merge_job_arn]
  }

  statement {
    sid = "LocksAndRuns"
    actions = [
      "dynamodb:GetItem",
      "dynamodb:PutItem",
      "dynamodb:UpdateItem",
      "dynamodb:DeleteItem",
      "dynamodb:Query",
    ]
    resources = [local.dynamodb_arns.state, local.dynamodb_arns.runs]
  }

  statement {
    sid       = "ListTables"
    actions   = ["dynamodb:GetItem", "dynamodb:Query", "dynamodb:Scan"]
    resources = [local.dynamodb_arns.registry]
  }

  statement {
    sid       = "Alert"
    actions   = ["sns:Publish"]
    resources = [aws_sns_topic.alerts.arn]
  }

  statement {
    sid       = "UseProjectKey"
    actions   = local.kms_data_actions
    resources = [aws_kms_key.main.arn]
  }

  statement {
    sid       = "Metrics"
    actions   = ["cloudwatch:PutMetricData"]
    resources = ["*"]

    condition {
      test     = "StringEquals"
      variable = "cloudwatch:namespace"
      values   = [local.metrics_namespace]
    }
  }

  # Vended log delivery and X-Ray do not support resource-level permissions.
  # logs:PutResourcePolicy (account-wide, no resource scope) is not needed:
  # terraform puts the log group's delivery policy itself (stepfunctions.tf).
  statement {
    sid = "ExecutionLogsAndTraces"
    actions = [
      "logs:CreateLogDelivery",
      "logs:GetLogDelivery",
      "logs:UpdateLogDelivery",
      "logs:DeleteLogDelivery",
      "logs:ListLogDeliveries",
      "logs:DescribeResourcePolicies",
      "logs:DescribeLogGroups",
      "xray:PutTraceSegments",
      "xray:PutTelemetryRecords",
      "xray:GetSamplingRules",
      "xray:GetSamplingTargets",
    ]
    resources = ["*"]
  }
}

resource "aws_iam_role_policy" "workflow" {
  name   = "batch-workflow"
  role   = aws_iam_role.workflow.id
  policy = data.aws_iam_policy_document.workflow.json
}

# ================================================================ triggers -> state machine

data "aws_iam_policy_document" "start_workflow" {
  statement {
    actions   = ["states:StartExecution"]
    resources = [aws_sfn_state_machine.batch.arn]
  }
}

resource "aws_iam_role" "scheduler" {
  name                 = "${var.name_prefix}-scheduler"
  description          = "EventBridge Scheduler: start ${local.names.state_machine} periodically"
  assume_role_policy   = data.aws_iam_policy_document.assume["scheduler"].json
  permissions_boundary = var.permissions_boundary_arn
}

resource "aws_iam_role_policy" "scheduler" {
  name   = "start-workflow"
  role   = aws_iam_role.scheduler.id
  policy = data.aws_iam_policy_document.start_workflow.json
}

resource "aws_iam_role" "events" {
  name                 = "${var.name_prefix}-events"
  description          = "EventBridge rule: start ${local.names.state_machine} when an extract manifest lands"
  assume_role_policy   = data.aws_iam_policy_document.assume["events"].json
  permissions_boundary = var.permissions_boundary_arn
}

resource "aws_iam_role_policy" "events" {
  name   = "start-workflow"
  role   = aws_iam_role.events.id
  policy = data.aws_iam_policy_document.start_workflow.json
}

# ================================================================ DataSync -> landing/

resource "aws_iam_role" "datasync" {
  count = local.datasync_enabled ? 1 : 0

  name                 = "${var.name_prefix}-datasync"
  description          = "DataSync: nightly extracts -> s3 landing/"
  assume_role_policy   = data.aws_iam_policy_document.assume["datasync"].json
  permissions_boundary = var.permissions_boundary_arn
}

# DataSync writes only the landing/<table>/ folders of the producers' tables
# (var.producers): a folder of any other table on the NFS export fails its
# transfer instead of landing.
data "aws_iam_policy_document" "datasync" {
  statement {
    sid       = "LakeBucket"
    actions   = ["s3:GetBucketLocation", "s3:ListBucketMultipartUploads"]
    resources = [aws_s3_bucket.lake.arn]
  }

  statement {
    sid       = "ListLanding"
    actions   = ["s3:ListBucket"]
    resources = [aws_s3_bucket.lake.arn]

    condition {
      test     = "StringLike"
      variable = "s3:prefix"
      values   = concat([local.zones.landing], [for t in local.landing_tables : "${local.zones.landing}${t}/*"])
    }
  }

  statement {
    sid = "LandingObjectsOfTheTables"
    actions = concat(local.s3_object_read, local.s3_object_write, [
      "s3:PutObjectTagging",
      "s3:DeleteObject",
    ])
    resources = [for t in local.landing_tables : "${aws_s3_bucket.lake.arn}/${local.zones.landing}${t}/*"]
  }

  statement {
    sid       = "UseProjectKey"
    actions   = local.kms_data_actions
    resources = [aws_kms_key.main.arn]
  }
}

resource "aws_iam_role_policy" "datasync" {
  count = local.datasync_enabled ? 1 : 0

  name   = "landing-writer"
  role   = aws_iam_role.datasync[0].id
  policy = data.aws_iam_policy_document.datasync.json
}

# ================================================================ producers (attach to the on-prem identities)

# One policy per producer (var.producers): it publishes change events and lands
# extracts for its own tables only. A producer writes its parts, then the
# manifest; a failed push removes what it wrote (so it may read, list and
# delete under its own tables' landing folders). The stream is shared: a
# Kinesis record cannot be scoped to a table by IAM, the merge checks every
# event against its table's schema instead.
data "aws_iam_policy_document" "producer" {
  for_each = var.producers

  statement {
    sid       = "PublishChanges"
    actions   = ["kinesis:PutRecord", "kinesis:PutRecords", "kinesis:DescribeStreamSummary", "kinesis:ListShards"]
    resources = [aws_kinesis_stream.changes.arn]
  }

  statement {
    sid       = "ReadRegistry"
    actions   = ["dynamodb:GetItem", "dynamodb:BatchGetItem", "dynamodb:Query"]
    resources = [local.dynamodb_arns.registry]
  }

  dynamic "statement" {
    for_each = length(each.value) > 0 ? [1] : []
    content {
      sid       = "LandExtractsOfItsTables"
      actions   = concat(local.s3_object_write, ["s3:GetObject", "s3:DeleteObject"])
      resources = [for t in each.value : "${aws_s3_bucket.lake.arn}/${local.zones.landing}${t}/*"]
    }
  }

  dynamic "statement" {
    for_each = length(each.value) > 0 ? [1] : []
    content {
      sid       = "ListItsLandingFolders"
      actions   = ["s3:ListBucket"]
      resources = [aws_s3_bucket.lake.arn]

      condition {
        test     = "StringLike"
        variable = "s3:prefix"
        values   = [for t in each.value : "${local.zones.landing}${t}/*"]
      }
    }
  }

  # `bridge kafka` dead-letters a message it cannot forward; it never reads dead letters back.
  statement {
    sid       = "DeadLetterBridgeMessages"
    actions   = ["s3:PutObject"]
    resources = ["${aws_s3_bucket.lake.arn}/${local.dlq_bridge}*"]
  }

  # `source postgres` registers its tables from the database's catalog on first
  # start and on a compatible schema change, and keeps its progress in the state
  # table: only producers named in var.registering_producers get these.
  dynamic "statement" {
    for_each = contains(var.registering_producers, each.key) ? [1] : []
    content {
      sid       = "RegisterItsTables"
      actions   = ["dynamodb:PutItem"]
      resources = [local.dynamodb_arns.registry]

      condition {
        test     = "ForAllValues:StringLike"
        variable = "dynamodb:LeadingKeys"
        values   = concat([for t in each.value : "table#${t}"], ["fp#*"])
      }
    }
  }

  dynamic "statement" {
    for_each = contains(var.registering_producers, each.key) ? [1] : []
    content {
      sid       = "KeepSourceProgress"
      actions   = ["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:DeleteItem", "dynamodb:Query"]
      resources = [local.dynamodb_arns.state]

      condition {
        test     = "ForAllValues:StringEquals"
        variable = "dynamodb:LeadingKeys"
        values   = ["source"]
      }
    }
  }

  statement {
    sid       = "EncryptWithProjectKey"
    actions   = ["kms:GenerateDataKey", "kms:Decrypt", "kms:DescribeKey"]
    resources = [aws_kms_key.main.arn]
  }
}

resource "aws_iam_policy" "producer" {
  for_each = var.producers

  name        = "${var.name_prefix}-producer-${each.key}"
  description = "On-prem producer ${each.key} (apps, Kafka bridge, bulk push): publish changes, land extracts of ${join(", ", each.value)}; attach to its IAM Roles Anywhere role or user."
  policy      = data.aws_iam_policy_document.producer[each.key].json
}
