# DataSync: the on-prem agent copies the nightly extracts (written by
# `producers bulk` as <table>/<extract_id>/part-*.parquet + _manifest.json) from
# an NFS export to s3://lake/landing/. Created only when an agent activation key
# is given; it may write only the landing/<table>/ folders of var.producers' tables. The bulk producer writes _manifest.json last; DataSync copies files
# in no guaranteed order, so the merge ignores an extract until its manifest
# is present and its parts match the manifest's sha256 (and the manifest's
# EventBridge notification starts the workflow).

locals {
  datasync_enabled = var.datasync_agent_activation_key != null
}

resource "aws_datasync_agent" "onprem" {
  count = local.datasync_enabled ? 1 : 0

  name           = "${var.name_prefix}-onprem"
  activation_key = var.datasync_agent_activation_key

  lifecycle {
    precondition {
      condition     = var.datasync_nfs_server_hostname != null
      error_message = "datasync_nfs_server_hostname is required with datasync_agent_activation_key."
    }
  }
}

resource "aws_datasync_location_nfs" "extracts" {
  count = local.datasync_enabled ? 1 : 0

  server_hostname = var.datasync_nfs_server_hostname
  subdirectory    = var.datasync_nfs_subdirectory

  on_prem_config {
    agent_arns = [aws_datasync_agent.onprem[0].arn]
  }

  mount_options {
    version = "NFS4_1"
  }
}

resource "aws_datasync_location_s3" "landing" {
  count = local.datasync_enabled ? 1 : 0

  s3_bucket_arn    = aws_s3_bucket.lake.arn
  subdirectory     = "/${local.zones.landing}"
  s3_storage_class = "STANDARD"

  s3_config {
    bucket_access_role_arn = aws_iam_role.datasync[0].arn
  }

  lifecycle {
    precondition {
      condition     = length(local.landing_tables) > 0
      error_message = "DataSync writes only the landing/<table>/ folders of var.producers' tables: name at least one."
    }
  }
}

resource "aws_cloudwatch_log_group" "datasync" {
  count = local.datasync_enabled ? 1 : 0

  name              = "/aws/datasync/${var.name_prefix}"
  retention_in_days = var.glue_log_retention_days
  kms_key_id        = aws_kms_key.main.arn
}

data "aws_iam_policy_document" "datasync_logs" {
  count = local.datasync_enabled ? 1 : 0

  statement {
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = ["${aws_cloudwatch_log_group.datasync[0].arn}:*"]

    principals {
      type        = "Service"
      identifiers = ["datasync.amazonaws.com"]
    }

    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }

    condition {
      test     = "ArnLike"
      variable = "aws:SourceArn"
      values   = ["arn:${local.partition}:datasync:${local.region}:${local.account_id}:task/*"]
    }
  }
}

resource "aws_cloudwatch_log_resource_policy" "datasync" {
  count = local.datasync_enabled ? 1 : 0

  policy_name     = "${var.name_prefix}-datasync"
  policy_document = data.aws_iam_policy_document.datasync_logs[0].json
}

resource "aws_datasync_task" "extracts" {
  count = local.datasync_enabled ? 1 : 0

  name                     = "${var.name_prefix}-extracts-to-landing"
  source_location_arn      = aws_datasync_location_nfs.extracts[0].arn
  destination_location_arn = aws_datasync_location_s3.landing[0].arn
  cloudwatch_log_group_arn = aws_cloudwatch_log_group.datasync[0].arn

  schedule {
    schedule_expression = var.datasync_schedule_expression
  }

  options {
    verify_mode            = "ONLY_FILES_TRANSFERRED"
    transfer_mode          = "CHANGED"
    overwrite_mode         = "NEVER" # extracts are immutable: a re-sent file never replaces a landed one
    preserve_deleted_files = "PRESERVE"
    posix_permissions      = "NONE"
    uid                    = "NONE"
    gid                    = "NONE"
    bytes_per_second       = var.datasync_bytes_per_second
    log_level              = "TRANSFER"
    task_queueing          = "ENABLED"
  }

  depends_on = [aws_cloudwatch_log_resource_policy.datasync]
}
