# Alerts, alarms and the dashboard. Custom metrics are published by the code to
# namespace HybridIngest (DlqRecords, FreshnessSeconds, ...) with whatever
# dimensions it likes (table, stage): the alarms aggregate them with
# CloudWatch Metrics Insights queries (SELECT ... FROM "HybridIngest"), which
# match every dimension set, so a new table is covered without a new alarm.

resource "aws_sns_topic" "alerts" {
  name              = local.names.alerts_topic
  kms_master_key_id = aws_kms_key.main.arn
}

data "aws_iam_policy_document" "alerts" {
  statement {
    sid       = "AlarmsPublish"
    actions   = ["sns:Publish"]
    resources = [aws_sns_topic.alerts.arn]

    principals {
      type        = "Service"
      identifiers = ["cloudwatch.amazonaws.com"]
    }

    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }

    condition {
      test     = "ArnLike"
      variable = "aws:SourceArn"
      values   = [local.alarm_arns]
    }
  }

  statement {
    sid       = "EventRulesPublish"
    actions   = ["sns:Publish"]
    resources = [aws_sns_topic.alerts.arn]

    principals {
      type        = "Service"
      identifiers = ["events.amazonaws.com"]
    }

    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }

    condition {
      test     = "ArnLike"
      variable = "aws:SourceArn"
      values   = [local.event_rule_arns]
    }
  }

  statement {
    sid       = "DenyInsecureTransport"
    effect    = "Deny"
    actions   = ["sns:Publish"]
    resources = [aws_sns_topic.alerts.arn]

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
}

resource "aws_sns_topic_policy" "alerts" {
  arn    = aws_sns_topic.alerts.arn
  policy = data.aws_iam_policy_document.alerts.json
}

resource "aws_sns_topic_subscription" "email" {
  for_each = toset(var.alarm_email_addresses)

  topic_arn = aws_sns_topic.alerts.arn
  protocol  = "email"
  endpoint  = each.value
}

locals {
  alarm_actions = [aws_sns_topic.alerts.arn]
}

resource "aws_cloudwatch_metric_alarm" "stream_iterator_age" {
  alarm_name          = "${var.name_prefix}-stream-iterator-age"
  alarm_description   = "The stream consumer is falling behind (or stopped): oldest unread record older than ${var.iterator_age_alarm_threshold_ms} ms."
  namespace           = "AWS/Kinesis"
  metric_name         = "GetRecords.IteratorAgeMilliseconds"
  dimensions          = { StreamName = aws_kinesis_stream.changes.name }
  statistic           = "Maximum"
  period              = 60
  evaluation_periods  = 5
  datapoints_to_alarm = 3
  threshold           = var.iterator_age_alarm_threshold_ms
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "breaching" # no GetRecords at all means no consumer
  alarm_actions       = local.alarm_actions
  ok_actions          = local.alarm_actions
}

resource "aws_cloudwatch_metric_alarm" "stream_write_throttled" {
  alarm_name          = "${var.name_prefix}-stream-write-throttled"
  alarm_description   = "Producers are throttled by the change stream (add shards or switch to ON_DEMAND)."
  namespace           = "AWS/Kinesis"
  metric_name         = "WriteProvisionedThroughputExceeded"
  dimensions          = { StreamName = aws_kinesis_stream.changes.name }
  statistic           = "Sum"
  period              = 300
  evaluation_periods  = 3
  threshold           = 0
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.alarm_actions
  ok_actions          = local.alarm_actions
}

resource "aws_cloudwatch_metric_alarm" "dlq_records" {
  alarm_name          = "${var.name_prefix}-dlq-records"
  alarm_description   = "Records were dead-lettered to s3://${local.lake_bucket_name}/${local.zones.dlq} (undecodable or invalid input)."
  evaluation_periods  = 1
  threshold           = var.dlq_alarm_threshold
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.alarm_actions
  ok_actions          = local.alarm_actions

  metric_query {
    id          = "dlq"
    label       = "DlqRecords (all tables and stages)"
    expression  = "SELECT SUM(DlqRecords) FROM \"${local.metrics_namespace}\""
    period      = 300
    return_data = true
  }
}

resource "aws_cloudwatch_metric_alarm" "freshness" {
  alarm_name          = "${var.name_prefix}-freshness"
  alarm_description   = "A curated table is more than ${var.freshness_alarm_threshold_seconds} s behind its source (FreshnessSeconds)."
  evaluation_periods  = 3
  threshold           = var.freshness_alarm_threshold_seconds
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "breaching" # no freshness at all means no merge is running
  alarm_actions       = local.alarm_actions
  ok_actions          = local.alarm_actions

  metric_query {
    id          = "freshness"
    label       = "FreshnessSeconds (worst table)"
    expression  = "SELECT MAX(FreshnessSeconds) FROM \"${local.metrics_namespace}\""
    period      = 300
    return_data = true
  }
}

resource "aws_cloudwatch_metric_alarm" "workflow_failed" {
  alarm_name          = "${var.name_prefix}-workflow-failed"
  alarm_description   = "A batch workflow execution failed, timed out or was aborted."
  evaluation_periods  = 1
  threshold           = 0
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.alarm_actions
  ok_actions          = local.alarm_actions

  metric_query {
    id          = "failures"
    label       = "Failed + timed out + aborted executions"
    expression  = "failed + timed_out + aborted"
    return_data = true
  }

  dynamic "metric_query" {
    for_each = {
      failed    = "ExecutionsFailed"
      timed_out = "ExecutionsTimedOut"
      aborted   = "ExecutionsAborted"
    }
    content {
      id = metric_query.key
      metric {
        namespace   = "AWS/States"
        metric_name = metric_query.value
        dimensions  = { StateMachineArn = aws_sfn_state_machine.batch.arn }
        stat        = "Sum"
        period      = 300
      }
    }
  }
}

resource "aws_cloudwatch_metric_alarm" "stream_job_failed" {
  alarm_name          = "${var.name_prefix}-stream-job-failed"
  alarm_description   = "The Glue streaming job ${local.names.streaming_job} has failed tasks."
  namespace           = "Glue"
  metric_name         = "glue.driver.aggregate.numFailedTasks"
  dimensions          = { JobName = aws_glue_job.stream.name, JobRunId = "ALL", Type = "count" }
  statistic           = "Sum"
  period              = 300
  evaluation_periods  = 1
  threshold           = 0
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.alarm_actions
  ok_actions          = local.alarm_actions
}

# Glue job runs that end FAILED/TIMEOUT/ERROR (merge runs are also reported by the workflow).
resource "aws_cloudwatch_event_rule" "glue_job_failed" {
  name        = "${var.name_prefix}-glue-job-failed"
  description = "Glue job runs of ${var.name_prefix} that failed"

  event_pattern = jsonencode({
    source      = ["aws.glue"]
    detail-type = ["Glue Job State Change"]
    detail = {
      jobName = [aws_glue_job.merge.name, aws_glue_job.stream.name]
      state   = ["FAILED", "TIMEOUT", "ERROR"]
    }
  })
}

resource "aws_cloudwatch_event_target" "glue_job_failed" {
  rule      = aws_cloudwatch_event_rule.glue_job_failed.name
  target_id = "alerts"
  arn       = aws_sns_topic.alerts.arn
}

resource "aws_cloudwatch_dashboard" "this" {
  dashboard_name = var.name_prefix

  dashboard_body = jsonencode({
    widgets = [
      {
        type = "metric", x = 0, y = 0, width = 12, height = 6
        properties = {
          title  = "Stream: incoming records and consumer lag"
          region = local.region
          view   = "timeSeries"
          metrics = [
            ["AWS/Kinesis", "IncomingRecords", "StreamName", aws_kinesis_stream.changes.name, { stat = "Sum" }],
            ["AWS/Kinesis", "GetRecords.IteratorAgeMilliseconds", "StreamName", aws_kinesis_stream.changes.name, { stat = "Maximum", yAxis = "right" }],
          ]
        }
      },
      {
        type = "metric", x = 12, y = 0, width = 12, height = 6
        properties = {
          title  = "Freshness of curated tables (s)"
          region = local.region
          view   = "timeSeries"
          metrics = [
            [{ expression = "SELECT MAX(FreshnessSeconds) FROM \"${local.metrics_namespace}\" GROUP BY \"${local.metrics_table_dimension}\"", id = "fresh", period = 300 }],
          ]
          annotations = { horizontal = [{ label = "alarm", value = var.freshness_alarm_threshold_seconds }] }
        }
      },
      {
        type = "metric", x = 0, y = 6, width = 12, height = 6
        properties = {
          title  = "Dead-lettered records"
          region = local.region
          view   = "timeSeries"
          stat   = "Sum"
          metrics = [
            [{ expression = "SELECT SUM(DlqRecords) FROM \"${local.metrics_namespace}\"", id = "dlq", period = 300 }],
          ]
        }
      },
      {
        type = "metric", x = 12, y = 6, width = 12, height = 6
        properties = {
          title  = "Batch workflow executions"
          region = local.region
          view   = "timeSeries"
          stat   = "Sum"
          period = 300
          metrics = [
            ["AWS/States", "ExecutionsSucceeded", "StateMachineArn", aws_sfn_state_machine.batch.arn],
            ["AWS/States", "ExecutionsFailed", "StateMachineArn", aws_sfn_state_machine.batch.arn],
            ["AWS/States", "ExecutionTime", "StateMachineArn", aws_sfn_state_machine.batch.arn, { stat = "Average", yAxis = "right" }],
          ]
        }
      },
      {
        type = "alarm", x = 0, y = 12, width = 24, height = 3
        properties = {
          title = "Alarms"
          alarms = [
            aws_cloudwatch_metric_alarm.stream_iterator_age.arn,
            aws_cloudwatch_metric_alarm.stream_write_throttled.arn,
            aws_cloudwatch_metric_alarm.dlq_records.arn,
            aws_cloudwatch_metric_alarm.freshness.arn,
            aws_cloudwatch_metric_alarm.workflow_failed.arn,
            aws_cloudwatch_metric_alarm.stream_job_failed.arn,
          ]
        }
      },
    ]
  })
}
