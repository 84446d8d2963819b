# Two ways the batch workflow starts (both target the state machine of
# stepfunctions.tf); a run that finds the lock taken ends without merging, so
# overlapping starts are harmless:
#   * EventBridge Scheduler, every 15 minutes by default (merges the stream);
#   * an EventBridge rule on "Object Created" of landing/<table>/<extract_id>/_manifest.json
#     (S3 -> EventBridge notifications are enabled on the lake bucket in s3.tf),
#     so a bulk extract is merged as soon as DataSync has landed it.
# Execution input: {"trigger": "schedule"} or
# {"trigger": "manifest", "bucket": ..., "key": ...}.

resource "aws_scheduler_schedule_group" "this" {
  name = var.name_prefix
}

resource "aws_scheduler_schedule" "batch" {
  name                         = "${var.name_prefix}-batch"
  group_name                   = aws_scheduler_schedule_group.this.name
  description                  = "Start ${local.names.state_machine} (merge stream and landed extracts)"
  schedule_expression          = var.batch_schedule_expression
  schedule_expression_timezone = var.batch_schedule_timezone
  state                        = var.batch_schedule_enabled ? "ENABLED" : "DISABLED"
  kms_key_arn                  = aws_kms_key.main.arn

  flexible_time_window {
    mode = "OFF"
  }

  target {
    arn      = aws_sfn_state_machine.batch.arn
    role_arn = aws_iam_role.scheduler.arn
    input    = jsonencode({ trigger = "schedule" })

    retry_policy {
      maximum_event_age_in_seconds = 600
      maximum_retry_attempts       = 3
    }
  }
}

resource "aws_cloudwatch_event_rule" "manifest_landed" {
  name        = "${var.name_prefix}-manifest-landed"
  description = "A bulk extract manifest landed in s3://${local.lake_bucket_name}/${local.zones.landing}"
  state       = var.manifest_trigger_enabled ? "ENABLED" : "DISABLED"

  event_pattern = jsonencode({
    source      = ["aws.s3"]
    detail-type = ["Object Created"]
    detail = {
      bucket = { name = [aws_s3_bucket.lake.id] }
      object = { key = [{ wildcard = "${local.zones.landing}*/_manifest.json" }] }
    }
  })
}

resource "aws_cloudwatch_event_target" "manifest_landed" {
  rule      = aws_cloudwatch_event_rule.manifest_landed.name
  target_id = "batch-workflow"
  arn       = aws_sfn_state_machine.batch.arn
  role_arn  = aws_iam_role.events.arn

  input_transformer {
    input_paths = {
      bucket = "$.detail.bucket.name"
      key    = "$.detail.object.key"
    }
    input_template = <<-JSON
      {"trigger": "manifest", "bucket": <bucket>, "key": <key>}
    JSON
  }

  retry_policy {
    maximum_event_age_in_seconds = 3600
    maximum_retry_attempts       = 10
  }
}
