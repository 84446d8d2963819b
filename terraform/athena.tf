# Athena workgroup for curated queries: the result location, SSE-KMS and the
# per-query scan limit are enforced (clients cannot override them).

resource "aws_athena_workgroup" "this" {
  name          = local.names.athena_workgroup
  description   = "hybrid-ingest curated tables (database ${local.names.curated_database})"
  force_destroy = var.force_destroy_buckets

  configuration {
    enforce_workgroup_configuration    = true
    publish_cloudwatch_metrics_enabled = true
    bytes_scanned_cutoff_per_query     = var.athena_bytes_scanned_cutoff

    engine_version {
      selected_engine_version = "Athena engine version 3"
    }

    result_configuration {
      output_location       = "s3://${aws_s3_bucket.athena_results.id}/results/"
      expected_bucket_owner = local.account_id

      encryption_configuration {
        encryption_option = "SSE_KMS"
        kms_key_arn       = aws_kms_key.main.arn
      }
    }
  }
}
