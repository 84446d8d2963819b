# Buckets: the lake (zones are prefixes: landing/, raw/, dlq/, curated/), the
# scripts/artifacts bucket the build uploads to, Athena results, and the access
# log bucket the other three log to. Every bucket: public access blocked,
# BucketOwnerEnforced, TLS-only policy, versioning; data buckets use SSE-KMS with
# the project key (the access log bucket uses SSE-S3: S3 server access logging
# cannot deliver to SSE-KMS buckets).

resource "aws_s3_bucket" "lake" {
  #checkov:skip=CKV_AWS_144:Cross-region replication is a per-environment DR decision, not part of the module.
  bucket        = local.lake_bucket_name
  force_destroy = var.force_destroy_buckets
}

resource "aws_s3_bucket" "scripts" {
  #checkov:skip=CKV_AWS_144:Artifacts are rebuilt from git; no replication needed.
  #checkov:skip=CKV2_AWS_62:Nothing reacts to uploads of scripts.
  bucket        = local.scripts_bucket_name
  force_destroy = var.force_destroy_buckets
}

resource "aws_s3_bucket" "athena_results" {
  #checkov:skip=CKV_AWS_144:Query results are disposable; no replication needed.
  #checkov:skip=CKV2_AWS_62:Nothing reacts to query results.
  bucket        = local.athena_bucket_name
  force_destroy = var.force_destroy_buckets
}

resource "aws_s3_bucket" "access_logs" {
  #checkov:skip=CKV_AWS_144:Access logs are not replicated.
  #checkov:skip=CKV2_AWS_62:Nothing reacts to access logs.
  #checkov:skip=CKV_AWS_18:This is the access log target; logging it to itself would loop.
  #checkov:skip=CKV_AWS_145:S3 server access logging only delivers to SSE-S3 buckets.
  bucket        = local.access_logs_bucket
  force_destroy = var.force_destroy_buckets
}

locals {
  buckets = {
    lake           = aws_s3_bucket.lake
    scripts        = aws_s3_bucket.scripts
    athena_results = aws_s3_bucket.athena_results
    access_logs    = aws_s3_bucket.access_logs
  }
  kms_buckets = { for k, b in local.buckets : k => b if k != "access_logs" }
}

resource "aws_s3_bucket_public_access_block" "this" {
  for_each = local.buckets

  bucket                  = each.value.id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_ownership_controls" "this" {
  for_each = local.buckets

  bucket = each.value.id
  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

resource "aws_s3_bucket_versioning" "this" {
  for_each = local.buckets

  bucket = each.value.id
  versioning_configuration {
    status = "Enabled"
  }
}

resource "aws_s3_bucket_server_side_encryption_configuration" "kms" {
  for_each = local.kms_buckets

  bucket = each.value.id
  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm     = "aws:kms"
      kms_master_key_id = aws_kms_key.main.arn
    }
    bucket_key_enabled = true
  }
}

resource "aws_s3_bucket_server_side_encryption_configuration" "access_logs" {
  bucket = aws_s3_bucket.access_logs.id
  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm = "AES256"
    }
  }
}

resource "aws_s3_bucket_logging" "this" {
  for_each = local.kms_buckets

  bucket        = each.value.id
  target_bucket = aws_s3_bucket.access_logs.id
  target_prefix = "${each.key}/"
}

# ---------------------------------------------------------------- bucket policies: TLS only

data "aws_iam_policy_document" "tls_only" {
  for_each = local.buckets

  statement {
    sid       = "DenyInsecureTransport"
    effect    = "Deny"
    actions   = ["s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:ListBucket", "s3:GetBucketLocation"]
    resources = [each.value.arn, "${each.value.arn}/*"]

    principals {
      type        = "*"
      identifiers = ["*"]
    }

    condition {
      test     = "Bool"
      variable = "aws:SecureTransport"
      values   = ["false"]
    }
  }

  statement {
    sid       = "DenyOutdatedTLS"
    effect    = "Deny"
    actions   = ["s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:ListBucket", "s3:GetBucketLocation"]
    resources = [each.value.arn, "${each.value.arn}/*"]

    principals {
      type        = "*"
      identifiers = ["*"]
    }

    condition {
      test     = "NumericLessThan"
      variable = "s3:TlsVersion"
      values   = ["1.2"]
    }
  }

  dynamic "statement" {
    for_each = each.key == "access_logs" ? [1] : []
    content {
      sid       = "S3ServerAccessLogsDelivery"
      actions   = ["s3:PutObject"]
      resources = ["${each.value.arn}/*"]

      principals {
        type        = "Service"
        identifiers = ["logging.s3.amazonaws.com"]
      }

      condition {
        test     = "StringEquals"
        variable = "aws:SourceAccount"
        values   = [local.account_id]
      }
    }
  }
}

resource "aws_s3_bucket_policy" "this" {
  for_each = local.buckets

  bucket = each.value.id
  policy = data.aws_iam_policy_document.tls_only[each.key].json

  depends_on = [aws_s3_bucket_public_access_block.this]
}

# ---------------------------------------------------------------- lake: events + lifecycle

# S3 -> EventBridge: the manifest rule in scheduler.tf listens for "Object Created".
resource "aws_s3_bucket_notification" "lake" {
  bucket      = aws_s3_bucket.lake.id
  eventbridge = true
}

# Lifecycle of the lake. The merge itself deletes superseded curated
# v=<run_id> folders once their retention window is over; lifecycle is only the
# backstop:
#   * every zone: noncurrent versions (left by overwrites and by the merge's
#     deletes, the bucket is versioned) expire after noncurrent_version_expiration_days,
#     and the delete markers left behind are removed;
#   * curated/: objects TAGGED retired=true expire after
#     curated_retired_expiration_days. The merge tags a superseded version's
#     objects retired=true when it switches the catalog, so a crashed or skipped
#     cleanup never leaves them forever. Live versions are never tagged, so the
#     rule can never touch what the catalog points at.
#   * raw/: STANDARD -> STANDARD_IA -> GLACIER (raw is the replay log; merges
#     read only records above the watermark, i.e. recent files);
#   * landing/: extracts expire after landing_expiration_days; dlq/ after
#     dlq_expiration_days.
resource "aws_s3_bucket_lifecycle_configuration" "lake" {
  #checkov:skip=CKV_AWS_300:Every prefix rule aborts incomplete uploads; S3 forbids it on the tag-filtered rule checkov looks at.
  bucket = aws_s3_bucket.lake.id

  rule {
    id     = "landing"
    status = "Enabled"
    filter {
      prefix = local.zones.landing
    }
    expiration {
      days = var.landing_expiration_days
    }
    noncurrent_version_expiration {
      noncurrent_days = var.noncurrent_version_expiration_days
    }
    abort_incomplete_multipart_upload {
      days_after_initiation = 7
    }
  }

  rule {
    id     = "raw"
    status = "Enabled"
    filter {
      prefix = local.zones.raw
    }
    transition {
      days          = var.raw_transition_ia_days
      storage_class = "STANDARD_IA"
    }
    transition {
      days          = var.raw_transition_glacier_days
      storage_class = "GLACIER"
    }
    dynamic "expiration" {
      for_each = var.raw_expiration_days == null ? [] : [var.raw_expiration_days]
      content {
        days = expiration.value
      }
    }
    noncurrent_version_expiration {
      noncurrent_days = var.noncurrent_version_expiration_days
    }
    abort_incomplete_multipart_upload {
      days_after_initiation = 7
    }
  }

  rule {
    id     = "dlq"
    status = "Enabled"
    filter {
      prefix = local.zones.dlq
    }
    expiration {
      days = var.dlq_expiration_days
    }
    noncurrent_version_expiration {
      noncurrent_days = var.noncurrent_version_expiration_days
    }
    abort_incomplete_multipart_upload {
      days_after_initiation = 7
    }
  }

  rule {
    id     = "curated-noncurrent"
    status = "Enabled"
    filter {
      prefix = local.zones.curated
    }
    noncurrent_version_expiration {
      noncurrent_days = var.noncurrent_version_expiration_days
    }
    expiration {
      expired_object_delete_marker = true
    }
    abort_incomplete_multipart_upload {
      days_after_initiation = 7
    }
  }

  rule {
    id     = "curated-retired-versions"
    status = "Enabled"
    filter {
      and {
        prefix = local.zones.curated
        tags = {
          retired = "true"
        }
      }
    }
    expiration {
      days = var.curated_retired_expiration_days
    }
  }

  rule {
    id     = "checkpoints"
    status = "Enabled"
    filter {
      prefix = local.checkpoint_prefix
    }
    noncurrent_version_expiration {
      noncurrent_days = 7
    }
    abort_incomplete_multipart_upload {
      days_after_initiation = 7
    }
  }
}

resource "aws_s3_bucket_lifecycle_configuration" "scripts" {
  bucket = aws_s3_bucket.scripts.id

  rule {
    id     = "whole-bucket"
    status = "Enabled"
    filter {}
    noncurrent_version_expiration {
      noncurrent_days = var.noncurrent_version_expiration_days
    }
    abort_incomplete_multipart_upload {
      days_after_initiation = 1
    }
  }

  rule {
    id     = "glue-temp"
    status = "Enabled"
    filter {
      prefix = "temp/"
    }
    expiration {
      days = 7
    }
  }

  rule {
    id     = "spark-event-logs"
    status = "Enabled"
    filter {
      prefix = "spark-logs/"
    }
    expiration {
      days = 30
    }
  }
}

resource "aws_s3_bucket_lifecycle_configuration" "athena_results" {
  bucket = aws_s3_bucket.athena_results.id

  rule {
    id     = "expire-results"
    status = "Enabled"
    filter {}
    expiration {
      days = var.athena_results_expiration_days
    }
    noncurrent_version_expiration {
      noncurrent_days = 1
    }
    abort_incomplete_multipart_upload {
      days_after_initiation = 1
    }
  }
}

resource "aws_s3_bucket_lifecycle_configuration" "access_logs" {
  bucket = aws_s3_bucket.access_logs.id

  rule {
    id     = "expire-access-logs"
    status = "Enabled"
    filter {}
    expiration {
      days = 365
    }
    noncurrent_version_expiration {
      noncurrent_days = 30
    }
    abort_incomplete_multipart_upload {
      days_after_initiation = 1
    }
  }
}
