# Buckets: the lake (zones are prefixes: landing/, raw/, dlq/, curated/), the
# scripts/artifacts bucket the build uploads to, Athena results, and the access
# log bucket the other three log to. Every bucket: public access blocked,
# BucketOwnerEnforced, versioning, and a policy that denies every request
# without TLS 1.2+ and every upload asking for another encryption than the
# bucket's own; data buckets use SSE-KMS with the project key (the access log
# bucket uses SSE-S3: S3 server access logging cannot deliver to SSE-KMS buckets).

resource "aws_s3_bucket" "lake" {
  #checkov:skip=CKV_AWS_144:Cross-region replication is a per-environment DR decision, not part of the module.
  bucket        = local.lake_bucket_name
  force_destroy = var.force_destroy_buckets

  lifecycle {
    precondition {
      condition     = startswith(local.lake_bucket_name, "${var.name_prefix}-")
      error_message = "Bucket names must start with \"<name_prefix>-\": the deploy role and the permissions boundary only reach buckets named so."
    }
  }
}

resource "aws_s3_bucket" "scripts" {
  #checkov:skip=CKV_AWS_144:Artifacts are rebuilt from git; no replication needed.
  #checkov:skip=CKV2_AWS_62:Nothing reacts to uploads of scripts.
  bucket        = local.scripts_bucket_name
  force_destroy = var.force_destroy_buckets

  lifecycle {
    precondition {
      condition     = startswith(local.scripts_bucket_name, "${var.name_prefix}-")
      error_message = "Bucket names must start with \"<name_prefix>-\": the deploy role and the permissions boundary only reach buckets named so."
    }
  }
}

resource "aws_s3_bucket" "athena_results" {
  #checkov:skip=CKV_AWS_144:Query results are disposable; no replication needed.
  #checkov:skip=CKV2_AWS_62:Nothing reacts to query results.
  bucket        = local.athena_bucket_name
  force_destroy = var.force_destroy_buckets

  lifecycle {
    precondition {
      condition     = startswith(local.athena_bucket_name, "${var.name_prefix}-")
      error_message = "Bucket names must start with \"<name_prefix>-\": the deploy role and the permissions boundary only reach buckets named so."
    }
  }
}

resource "aws_s3_bucket" "access_logs" {
  #checkov:skip=CKV_AWS_144:Access logs are not replicated.
  #checkov:skip=CKV2_AWS_62:Nothing reacts to access logs.
  #checkov:skip=CKV_AWS_18:This is the access log target; logging it to itself would loop.
  #checkov:skip=CKV_AWS_145:S3 server access logging only delivers to SSE-S3 buckets.
  bucket        = local.access_logs_bucket
  force_destroy = var.force_destroy_buckets

  lifecycle {
    precondition {
      condition     = startswith(local.access_logs_bucket, "${var.name_prefix}-")
      error_message = "Bucket names must start with \"<name_prefix>-\": the deploy role and the permissions boundary only reach buckets named so."
    }
  }
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

# ---------------------------------------------------------------- bucket policies: TLS and encryption

# What every bucket's policy denies, whoever asks:
#   * any request (s3:*) on the bucket or its objects without TLS, or with TLS < 1.2;
#   * an upload that asks for another encryption than the bucket's. Uploads that
#     name no encryption at all are NOT denied: the bucket's default encryption
#     (SSE-KMS with the project key) applies to them, and most writers (pyarrow,
#     DataSync, Glue's own writers) rely on that default and send no header. So
#     the denies only fire when a header is present (Null = false) and differs:
#     the algorithm is not aws:kms, or the key is not the project key's ARN, or
#     aws:kms comes without a key id (S3 would then use the aws/s3 key). A plain
#     `StringNotEquals` on the algorithm would also match requests without the
#     header and break every writer that relies on the default.
#   The access log bucket takes AES256 (SSE-S3) instead, see above.
locals {
  bucket_encryption = {
    lake           = { algorithm = "aws:kms", key_arn = aws_kms_key.main.arn }
    scripts        = { algorithm = "aws:kms", key_arn = aws_kms_key.main.arn }
    athena_results = { algorithm = "aws:kms", key_arn = aws_kms_key.main.arn }
    access_logs    = { algorithm = "AES256", key_arn = null }
  }
  # Buckets whose server access logs go to the access log bucket (aws_s3_bucket_logging).
  logged_bucket_arns = [for k, b in local.kms_buckets : b.arn]
}

data "aws_iam_policy_document" "bucket" {
  for_each = local.buckets

  statement {
    sid       = "DenyInsecureTransport"
    effect    = "Deny"
    actions   = ["s3:*"]
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
    actions   = ["s3:*"]
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

  statement {
    sid       = "DenyOtherEncryption"
    effect    = "Deny"
    actions   = ["s3:PutObject"]
    resources = ["${each.value.arn}/*"]

    principals {
      type        = "*"
      identifiers = ["*"]
    }

    condition {
      test     = "Null"
      variable = "s3:x-amz-server-side-encryption"
      values   = ["false"]
    }

    condition {
      test     = "StringNotEquals"
      variable = "s3:x-amz-server-side-encryption"
      values   = [local.bucket_encryption[each.key].algorithm]
    }
  }

  dynamic "statement" {
    for_each = local.bucket_encryption[each.key].key_arn == null ? [] : [local.bucket_encryption[each.key].key_arn]
    content {
      sid       = "DenyOtherKmsKey"
      effect    = "Deny"
      actions   = ["s3:PutObject"]
      resources = ["${each.value.arn}/*"]

      principals {
        type        = "*"
        identifiers = ["*"]
      }

      condition {
        test     = "Null"
        variable = "s3:x-amz-server-side-encryption-aws-kms-key-id"
        values   = ["false"]
      }

      condition {
        test     = "StringNotEquals"
        variable = "s3:x-amz-server-side-encryption-aws-kms-key-id"
        values   = [statement.value]
      }
    }
  }

  dynamic "statement" {
    for_each = local.bucket_encryption[each.key].key_arn == null ? [] : [1]
    content {
      sid       = "DenyKmsWithoutProjectKey"
      effect    = "Deny"
      actions   = ["s3:PutObject"]
      resources = ["${each.value.arn}/*"]

      principals {
        type        = "*"
        identifiers = ["*"]
      }

      condition {
        test     = "Null"
        variable = "s3:x-amz-server-side-encryption"
        values   = ["false"]
      }

      condition {
        test     = "Null"
        variable = "s3:x-amz-server-side-encryption-aws-kms-key-id"
        values   = ["true"]
      }
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

      condition {
        test     = "ArnLike"
        variable = "aws:SourceArn"
        values   = local.logged_bucket_arns
      }
    }
  }
}

resource "aws_s3_bucket_policy" "this" {
  for_each = local.buckets

  bucket = each.value.id
  policy = data.aws_iam_policy_document.bucket[each.key].json

  depends_on = [aws_s3_bucket_public_access_block.this]
}

# ---------------------------------------------------------------- lake: events + lifecycle

# S3 -> EventBridge: the manifest rule in scheduler.tf listens for "Object Created".
resource "aws_s3_bucket_notification" "lake" {
  bucket      = aws_s3_bucket.lake.id
  eventbridge = true
}

# Lifecycle of the lake. Curated tables are Iceberg tables: the merge expires
# old snapshots and removes files no snapshot references itself, past the
# retention window; lifecycle is only the backstop:
#   * every zone: noncurrent versions (left by overwrites and by the merge's
#     deletes, the bucket is versioned) expire after noncurrent_version_expiration_days,
#     and the delete markers left behind are removed;
#   * raw/: STANDARD -> STANDARD_IA -> GLACIER (raw is the replay log; merges
#     read only records above the watermark, i.e. recent files);
#   * landing/: extracts expire after landing_expiration_days; dlq/ after
#     dlq_expiration_days;
#   * the whole bucket: incomplete multipart uploads are aborted after 7 days.
resource "aws_s3_bucket_lifecycle_configuration" "lake" {
  bucket = aws_s3_bucket.lake.id

  rule {
    id     = "abort-incomplete-uploads"
    status = "Enabled"
    filter {}
    abort_incomplete_multipart_upload {
      days_after_initiation = 7
    }
  }

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
