# The batch workflow (Step Functions) and its plan job.
#
# workflow.asl.json.tpl is the single definition for AWS and the local stack:
# terraform renders it here with templatefile(), hybrid_ingest/workflow.py renders
# the same file for moto's interpreter. It therefore uses only plain ${name}
# placeholders (no %{ } directives, no expressions): every value is computed here.
#
# Flow: plan job (takes the DynamoDB run lock with a lease and sizes every table;
# a run that finds the lock held ends as "already-running") -> Map over tables
# (merge job per table, startJobRun + Wait/getJobRun/Choice polling, retries on
# ConcurrentRunsExceeded/Throttling, per-table Catch) -> run history -> release
# the lock -> SNS alert + Fail on any failure. Triggers live in scheduler.tf.

variable "workflow_poll_seconds" {
  type        = number
  description = "Seconds between two GetJobRun polls of a running plan or merge job run."
  default     = 30

  validation {
    condition     = var.workflow_poll_seconds >= 1
    error_message = "workflow_poll_seconds must be at least 1."
  }
}

variable "workflow_retry_interval_seconds" {
  type        = number
  description = "First retry interval (doubled each attempt) after Glue/DynamoDB throttling or ConcurrentRunsExceeded."
  default     = 15
}

variable "workflow_retry_max_attempts" {
  type        = number
  description = "Retries after throttling or ConcurrentRunsExceeded before a table counts as failed."
  default     = 6
}

variable "plan_timeout_minutes" {
  type        = number
  description = "Timeout of one plan job run in minutes (it only lists inputs and writes one DynamoDB item)."
  default     = 15
}

locals {
  plan_job_name = "${var.name_prefix}-plan" # hybrid_ingest.config.Names.plan_job
}

# Takes the run lock and writes the per-table plan (engine, worker type and
# count, execution class) that the Map feeds to StartJobRun. It reads what the
# merge reads and writes the state table, so it runs under the merge job's role.
resource "aws_glue_job" "plan" {
  name                   = local.plan_job_name
  description            = "hybrid-ingest batch plan: run lock + per-table sizing for ${local.names.state_machine}"
  role_arn               = aws_iam_role.glue_merge.arn
  glue_version           = "5.0"
  worker_type            = "G.1X"
  number_of_workers      = 2
  timeout                = var.plan_timeout_minutes
  max_retries            = 0
  security_configuration = aws_glue_security_configuration.jobs.name
  connections            = aws_glue_connection.network[*].name

  command {
    name            = "glueetl"
    python_version  = "3"
    script_location = "${local.release_uri}/glue_jobs/plan_job.py"
  }

  # Overlapping triggers (schedule + manifest) each start a plan; all but one find the lock held.
  execution_property {
    max_concurrent_runs = 5
  }

  default_arguments = merge(local.glue_common_arguments, {
    "--region" = local.region
  })
}

resource "aws_cloudwatch_log_group" "workflow" {
  name              = "/aws/vendedlogs/states/${local.names.state_machine}"
  retention_in_days = var.glue_log_retention_days
  kms_key_id        = aws_kms_key.main.arn
}

# The state machine's execution logs are a vended log delivery. Its delivery
# policy is put here rather than by the workflow role at run time, so the role
# needs no logs:PutResourcePolicy (an account-wide action AWS does not scope).
data "aws_iam_policy_document" "workflow_logs" {
  statement {
    sid       = "VendedLogDelivery"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = ["${aws_cloudwatch_log_group.workflow.arn}:*"]

    principals {
      type        = "Service"
      identifiers = ["delivery.logs.amazonaws.com"]
    }

    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }

    condition {
      test     = "ArnLike"
      variable = "aws:SourceArn"
      values   = ["arn:${local.partition}:logs:${local.region}:${local.account_id}:*"]
    }
  }
}

resource "aws_cloudwatch_log_resource_policy" "workflow" {
  policy_name     = "${var.name_prefix}-workflow-logs"
  policy_document = data.aws_iam_policy_document.workflow_logs.json
}

resource "aws_sfn_state_machine" "batch" {
  name     = local.names.state_machine
  role_arn = aws_iam_role.workflow.arn
  type     = "STANDARD"

  definition = templatefile("${path.module}/workflow.asl.json.tpl", {
    state_table            = aws_dynamodb_table.this["state"].name
    runs_table             = aws_dynamodb_table.this["runs"].name
    plan_job               = aws_glue_job.plan.name
    merge_job              = aws_glue_job.merge.name
    alerts_topic_arn       = aws_sns_topic.alerts.arn
    map_concurrency        = var.workflow_map_concurrency
    poll_seconds           = var.workflow_poll_seconds
    retry_interval_seconds = var.workflow_retry_interval_seconds
    retry_max_attempts     = var.workflow_retry_max_attempts
  })

  logging_configuration {
    log_destination        = "${aws_cloudwatch_log_group.workflow.arn}:*"
    include_execution_data = true
    level                  = "ERROR"
  }

  tracing_configuration {
    enabled = true
  }

  depends_on = [aws_cloudwatch_log_resource_policy.workflow]
}

# The workflow role (iam.tf) may run the merge job; it also starts and polls the plan job.
data "aws_iam_policy_document" "workflow_plan_job" {
  statement {
    sid       = "RunPlanJob"
    actions   = ["glue:StartJobRun", "glue:GetJobRun", "glue:GetJobRuns", "glue:BatchStopJobRun"]
    resources = ["arn:${local.partition}:glue:${local.region}:${local.account_id}:job/${aws_glue_job.plan.name}"]
  }
}

resource "aws_iam_role_policy" "workflow_plan_job" {
  name   = "batch-workflow-plan-job"
  role   = aws_iam_role.workflow.id
  policy = data.aws_iam_policy_document.workflow_plan_job.json
}
