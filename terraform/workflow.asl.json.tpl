{
  "Comment": "hybrid-ingest batch workflow: plan (lock + sizing) -> merge every table (Map) -> run history -> unlock -> alert on failure. The plan Glue job takes the run lock (DynamoDB conditional put with a lease and a fencing token; ASL cannot compute now + lease) and writes the plan item plan#<execution name>; a run that finds the lock held ends as already-running. Glue runs are started with glue:startJobRun and polled with Wait + aws-sdk:glue:getJobRun + Choice instead of .sync, so the same definition runs on AWS and on moto's interpreter. Error names are custom (never States.*) and service results are trimmed with ResultSelector/Parameters. Rendered by terraform templatefile() and by hybrid_ingest.workflow.render(): only plain dollar-brace variable placeholders, no template directives or expressions.",
  "StartAt": "Begin",
  "States": {
    "Begin": {
      "Type": "Pass",
      "Comment": "Keep the trigger's input aside and stamp the run's start (an ISO string, used in run history keys).",
      "Parameters": {
        "input.$": "$",
        "started_at.$": "$$.State.EnteredTime"
      },
      "Next": "StartPlan"
    },
    "StartPlan": {
      "Type": "Task",
      "Comment": "The plan job acquires the lock (owner = execution name) and sizes every table.",
      "Resource": "arn:aws:states:::glue:startJobRun",
      "Parameters": {
        "JobName": "${plan_job}",
        "Arguments": {
          "--run_id.$": "$$.Execution.Name",
          "--input.$": "States.JsonToString($.input)"
        }
      },
      "ResultSelector": {
        "JobRunId.$": "$.JobRunId"
      },
      "ResultPath": "$.plan_run",
      "Retry": [
        {
          "ErrorEquals": ["Glue.ConcurrentRunsExceededException", "Glue.ThrottlingException", "Glue.InternalServiceException"],
          "IntervalSeconds": ${retry_interval_seconds},
          "BackoffRate": 2.0,
          "MaxAttempts": ${retry_max_attempts}
        }
      ],
      "Catch": [
        {
          "ErrorEquals": ["States.ALL"],
          "ResultPath": "$.failure",
          "Next": "PlanNotStarted"
        }
      ],
      "Next": "WaitPlan"
    },
    "WaitPlan": {
      "Type": "Wait",
      "Seconds": ${poll_seconds},
      "Next": "PollPlan"
    },
    "PollPlan": {
      "Type": "Task",
      "Resource": "arn:aws:states:::aws-sdk:glue:getJobRun",
      "Parameters": {
        "JobName": "${plan_job}",
        "RunId.$": "$.plan_run.JobRunId"
      },
      "ResultSelector": {
        "state.$": "$.JobRun.JobRunState",
        "run.$": "$.JobRun"
      },
      "ResultPath": "$.plan_poll",
      "Retry": [
        {
          "ErrorEquals": ["Glue.ThrottlingException", "Glue.InternalServiceException", "Glue.OperationTimeoutException"],
          "IntervalSeconds": ${retry_interval_seconds},
          "BackoffRate": 2.0,
          "MaxAttempts": ${retry_max_attempts}
        }
      ],
      "Catch": [
        {
          "ErrorEquals": ["States.ALL"],
          "ResultPath": "$.failure",
          "Next": "PlanNotStarted"
        }
      ],
      "Next": "PlanDone"
    },
    "PlanDone": {
      "Type": "Choice",
      "Choices": [
        {"Variable": "$.plan_poll.state", "StringEquals": "SUCCEEDED", "Next": "PlanSucceeded"},
        {
          "Or": [
            {"Variable": "$.plan_poll.state", "StringEquals": "STARTING"},
            {"Variable": "$.plan_poll.state", "StringEquals": "RUNNING"},
            {"Variable": "$.plan_poll.state", "StringEquals": "WAITING"},
            {"Variable": "$.plan_poll.state", "StringEquals": "STOPPING"}
          ],
          "Next": "WaitPlan"
        },
        {"Variable": "$.plan_poll.run.ErrorMessage", "IsPresent": true, "Next": "PlanFailedWithMessage"}
      ],
      "Default": "PlanFailed"
    },
    "PlanNotStarted": {
      "Type": "Pass",
      "Parameters": {
        "status": "FAILED",
        "error": "PlanJobFailed",
        "cause.$": "$.failure.Cause",
        "failed": ["(plan)"]
      },
      "ResultPath": "$.summary",
      "Next": "RecordRun"
    },
    "PlanFailedWithMessage": {
      "Type": "Pass",
      "Parameters": {
        "status": "FAILED",
        "error": "PlanJobFailed",
        "cause.$": "States.Format('plan job run {} ended {}: {}', $.plan_run.JobRunId, $.plan_poll.state, $.plan_poll.run.ErrorMessage)",
        "failed": ["(plan)"]
      },
      "ResultPath": "$.summary",
      "Next": "RecordRun"
    },
    "PlanFailed": {
      "Type": "Pass",
      "Parameters": {
        "status": "FAILED",
        "error": "PlanJobFailed",
        "cause.$": "States.Format('plan job run {} ended {}', $.plan_run.JobRunId, $.plan_poll.state)",
        "failed": ["(plan)"]
      },
      "ResultPath": "$.summary",
      "Next": "RecordRun"
    },
    "PlanSucceeded": {
      "Type": "Pass",
      "Comment": "Drop the plan's GetJobRun result (it carries timestamps) before anything serialises the state.",
      "Parameters": {
        "input.$": "$.input",
        "started_at.$": "$.started_at",
        "plan_run.$": "$.plan_run"
      },
      "Next": "ReadPlan"
    },
    "ReadPlan": {
      "Type": "Task",
      "Resource": "arn:aws:states:::dynamodb:getItem",
      "Parameters": {
        "TableName": "${state_table}",
        "Key": {
          "pk": {"S.$": "States.Format('plan#{}', $$.Execution.Name)"},
          "sk": {"S": "plan"}
        },
        "ConsistentRead": true
      },
      "ResultSelector": {
        "doc.$": "States.StringToJson($.Item.plan.S)"
      },
      "ResultPath": "$.plan",
      "Retry": [
        {
          "ErrorEquals": ["DynamoDB.ProvisionedThroughputExceededException", "DynamoDB.ThrottlingException", "DynamoDB.InternalServerErrorException"],
          "IntervalSeconds": ${retry_interval_seconds},
          "BackoffRate": 2.0,
          "MaxAttempts": ${retry_max_attempts}
        }
      ],
      "Catch": [
        {
          "ErrorEquals": ["States.ALL"],
          "ResultPath": "$.failure",
          "Next": "PlanNotStarted"
        }
      ],
      "Next": "AlreadyRunning?"
    },
    "AlreadyRunning?": {
      "Type": "Choice",
      "Choices": [
        {"Variable": "$.plan.doc.status", "StringEquals": "already-running", "Next": "AlreadyRunning"}
      ],
      "Default": "MergeTables"
    },
    "AlreadyRunning": {
      "Type": "Pass",
      "Comment": "Another execution holds the lock: end cleanly, touching neither the lock nor the tables.",
      "Parameters": {
        "status": "already-running",
        "holder.$": "$.plan.doc.holder"
      },
      "End": true
    },
    "MergeTables": {
      "Type": "Map",
      "Comment": "One merge job run per table; a table's failure is caught inside its iteration so the others still merge.",
      "ItemsPath": "$.plan.doc.tables",
      "MaxConcurrency": ${map_concurrency},
      "ItemSelector": {
        "plan.$": "$$.Map.Item.Value",
        "run_id.$": "$$.Execution.Name",
        "started_at.$": "$.started_at"
      },
      "ItemProcessor": {
        "ProcessorConfig": {"Mode": "INLINE"},
        "StartAt": "StartMerge",
        "States": {
          "StartMerge": {
            "Type": "Task",
            "Resource": "arn:aws:states:::glue:startJobRun",
            "Parameters": {
              "JobName": "${merge_job}",
              "Arguments": {
                "--table.$": "$.plan.table",
                "--engine.$": "$.plan.engine",
                "--run_id.$": "$.run_id"
              },
              "WorkerType.$": "$.plan.worker_type",
              "NumberOfWorkers.$": "$.plan.workers",
              "ExecutionClass.$": "$.plan.execution_class"
            },
            "ResultSelector": {
              "JobRunId.$": "$.JobRunId"
            },
            "ResultPath": "$.run",
            "Retry": [
              {
                "ErrorEquals": ["Glue.ConcurrentRunsExceededException", "Glue.ThrottlingException", "Glue.InternalServiceException"],
                "IntervalSeconds": ${retry_interval_seconds},
                "BackoffRate": 2.0,
                "MaxAttempts": ${retry_max_attempts}
              }
            ],
            "Catch": [
              {
                "ErrorEquals": ["States.ALL"],
                "ResultPath": "$.failure",
                "Next": "MergeNotStarted"
              }
            ],
            "Next": "WaitMerge"
          },
          "WaitMerge": {
            "Type": "Wait",
            "Seconds": ${poll_seconds},
            "Next": "PollMerge"
          },
          "PollMerge": {
            "Type": "Task",
            "Resource": "arn:aws:states:::aws-sdk:glue:getJobRun",
            "Parameters": {
              "JobName": "${merge_job}",
              "RunId.$": "$.run.JobRunId"
            },
            "ResultSelector": {
              "state.$": "$.JobRun.JobRunState",
              "run.$": "$.JobRun"
            },
            "ResultPath": "$.poll",
            "Retry": [
              {
                "ErrorEquals": ["Glue.ThrottlingException", "Glue.InternalServiceException", "Glue.OperationTimeoutException"],
                "IntervalSeconds": ${retry_interval_seconds},
                "BackoffRate": 2.0,
                "MaxAttempts": ${retry_max_attempts}
              }
            ],
            "Catch": [
              {
                "ErrorEquals": ["States.ALL"],
                "ResultPath": "$.failure",
                "Next": "MergeNotStarted"
              }
            ],
            "Next": "MergeDone"
          },
          "MergeDone": {
            "Type": "Choice",
            "Choices": [
              {"Variable": "$.poll.state", "StringEquals": "SUCCEEDED", "Next": "MergeSucceeded"},
              {
                "Or": [
                  {"Variable": "$.poll.state", "StringEquals": "STARTING"},
                  {"Variable": "$.poll.state", "StringEquals": "RUNNING"},
                  {"Variable": "$.poll.state", "StringEquals": "WAITING"},
                  {"Variable": "$.poll.state", "StringEquals": "STOPPING"}
                ],
                "Next": "WaitMerge"
              },
              {"Variable": "$.poll.run.ErrorMessage", "IsPresent": true, "Next": "MergeFailedWithMessage"}
            ],
            "Default": "MergeFailed"
          },
          "MergeSucceeded": {
            "Type": "Pass",
            "Parameters": {
              "table.$": "$.plan.table",
              "engine.$": "$.plan.engine",
              "status": "SUCCEEDED",
              "job_run_id.$": "$.run.JobRunId",
              "error": "",
              "cause": "",
              "run_id.$": "$.run_id",
              "started_at.$": "$.started_at"
            },
            "Next": "RecordTableRun"
          },
          "MergeFailedWithMessage": {
            "Type": "Pass",
            "Parameters": {
              "table.$": "$.plan.table",
              "engine.$": "$.plan.engine",
              "status": "FAILED",
              "failure.$": "$.plan.table",
              "job_run_id.$": "$.run.JobRunId",
              "error.$": "States.Format('MergeJob{}', $.poll.state)",
              "cause.$": "$.poll.run.ErrorMessage",
              "run_id.$": "$.run_id",
              "started_at.$": "$.started_at"
            },
            "Next": "RecordTableRun"
          },
          "MergeFailed": {
            "Type": "Pass",
            "Parameters": {
              "table.$": "$.plan.table",
              "engine.$": "$.plan.engine",
              "status": "FAILED",
              "failure.$": "$.plan.table",
              "job_run_id.$": "$.run.JobRunId",
              "error.$": "States.Format('MergeJob{}', $.poll.state)",
              "cause.$": "States.Format('job run ended {} without an error message', $.poll.state)",
              "run_id.$": "$.run_id",
              "started_at.$": "$.started_at"
            },
            "Next": "RecordTableRun"
          },
          "MergeNotStarted": {
            "Type": "Pass",
            "Parameters": {
              "table.$": "$.plan.table",
              "engine.$": "$.plan.engine",
              "status": "FAILED",
              "failure.$": "$.plan.table",
              "job_run_id": "",
              "error.$": "$.failure.Error",
              "cause.$": "$.failure.Cause",
              "run_id.$": "$.run_id",
              "started_at.$": "$.started_at"
            },
            "Next": "RecordTableRun"
          },
          "RecordTableRun": {
            "Type": "Task",
            "Comment": "Per-table run history (runs table, pk = table); best effort: a failed write never hides the merge outcome.",
            "Resource": "arn:aws:states:::dynamodb:putItem",
            "Parameters": {
              "TableName": "${runs_table}",
              "Item": {
                "pk": {"S.$": "$.table"},
                "sk": {"S.$": "States.Format('{}#{}', $.started_at, $.run_id)"},
                "run_id": {"S.$": "$.run_id"},
                "source": {"S": "workflow"},
                "status": {"S.$": "$.status"},
                "engine": {"S.$": "$.engine"},
                "job_run_id": {"S.$": "$.job_run_id"},
                "error": {"S.$": "$.error"},
                "cause": {"S.$": "$.cause"},
                "started_at": {"S.$": "$.started_at"},
                "finished_at": {"S.$": "$$.State.EnteredTime"}
              }
            },
            "ResultPath": null,
            "Retry": [
              {
                "ErrorEquals": ["DynamoDB.ProvisionedThroughputExceededException", "DynamoDB.ThrottlingException", "DynamoDB.InternalServerErrorException"],
                "IntervalSeconds": ${retry_interval_seconds},
                "BackoffRate": 2.0,
                "MaxAttempts": ${retry_max_attempts}
              }
            ],
            "Catch": [
              {
                "ErrorEquals": ["States.ALL"],
                "ResultPath": null,
                "Next": "TableDone"
              }
            ],
            "Next": "TableDone"
          },
          "TableDone": {
            "Type": "Succeed",
            "Comment": "The iteration's output is its outcome record; only failed ones carry 'failure' (the table name)."
          }
        }
      },
      "ResultPath": "$.results",
      "Catch": [
        {
          "ErrorEquals": ["States.ALL"],
          "ResultPath": "$.failure",
          "Next": "MapFailed"
        }
      ],
      "Next": "CollectFailures"
    },
    "MapFailed": {
      "Type": "Pass",
      "Parameters": {
        "status": "FAILED",
        "error": "MapFailed",
        "cause.$": "States.Format('{}: {}', $.failure.Error, $.failure.Cause)",
        "failed": ["(map)"]
      },
      "ResultPath": "$.summary",
      "Next": "RecordRun"
    },
    "CollectFailures": {
      "Type": "Pass",
      "Parameters": {
        "failed.$": "$.results[*].failure"
      },
      "ResultPath": "$.check",
      "Next": "CountFailures"
    },
    "CountFailures": {
      "Type": "Pass",
      "Parameters": {
        "failed.$": "$.check.failed",
        "count.$": "States.ArrayLength($.check.failed)"
      },
      "ResultPath": "$.check",
      "Next": "AnyTableFailed?"
    },
    "AnyTableFailed?": {
      "Type": "Choice",
      "Choices": [
        {"Variable": "$.check.count", "NumericGreaterThan": 0, "Next": "TablesFailed"}
      ],
      "Default": "TablesSucceeded"
    },
    "TablesFailed": {
      "Type": "Pass",
      "Parameters": {
        "status": "FAILED",
        "error": "MergeFailed",
        "cause.$": "States.Format('merge failed for {} table(s): {}', $.check.count, States.JsonToString($.check.failed))",
        "failed.$": "$.check.failed"
      },
      "ResultPath": "$.summary",
      "Next": "RecordRun"
    },
    "TablesSucceeded": {
      "Type": "Pass",
      "Parameters": {
        "status": "SUCCEEDED",
        "error": "",
        "cause": "",
        "failed": []
      },
      "ResultPath": "$.summary",
      "Next": "RecordRun"
    },
    "RecordRun": {
      "Type": "Task",
      "Comment": "Workflow run history (runs table, pk = workflow); best effort, the lock is released whatever happens here.",
      "Resource": "arn:aws:states:::dynamodb:putItem",
      "Parameters": {
        "TableName": "${runs_table}",
        "Item": {
          "pk": {"S": "workflow"},
          "sk": {"S.$": "States.Format('{}#{}', $.started_at, $$.Execution.Name)"},
          "run_id": {"S.$": "$$.Execution.Name"},
          "status": {"S.$": "$.summary.status"},
          "error": {"S.$": "$.summary.error"},
          "cause": {"S.$": "$.summary.cause"},
          "started_at": {"S.$": "$.started_at"},
          "finished_at": {"S.$": "$$.State.EnteredTime"},
          "failed_tables": {"S.$": "States.JsonToString($.summary.failed)"}
        }
      },
      "ResultPath": null,
      "Retry": [
        {
          "ErrorEquals": ["DynamoDB.ProvisionedThroughputExceededException", "DynamoDB.ThrottlingException", "DynamoDB.InternalServerErrorException"],
          "IntervalSeconds": ${retry_interval_seconds},
          "BackoffRate": 2.0,
          "MaxAttempts": ${retry_max_attempts}
        }
      ],
      "Catch": [
        {
          "ErrorEquals": ["States.ALL"],
          "ResultPath": "$.record_failure",
          "Next": "ReleaseLock"
        }
      ],
      "Next": "ReleaseLock"
    },
    "ReleaseLock": {
      "Type": "Task",
      "Comment": "Release the lock only if this execution still owns it (a lease that expired may have been taken over): the owner is removed and the lease expired, the item and its fencing token stay, as StateStore.release does.",
      "Resource": "arn:aws:states:::dynamodb:updateItem",
      "Parameters": {
        "TableName": "${state_table}",
        "Key": {
          "pk": {"S": "lease#batch"},
          "sk": {"S": "lease"}
        },
        "UpdateExpression": "REMOVE #o SET expires = :zero",
        "ConditionExpression": "#o = :o",
        "ExpressionAttributeNames": {"#o": "owner"},
        "ExpressionAttributeValues": {":o": {"S.$": "$$.Execution.Name"}, ":zero": {"N": "0"}}
      },
      "ResultPath": null,
      "Retry": [
        {
          "ErrorEquals": ["DynamoDB.ProvisionedThroughputExceededException", "DynamoDB.ThrottlingException", "DynamoDB.InternalServerErrorException"],
          "IntervalSeconds": ${retry_interval_seconds},
          "BackoffRate": 2.0,
          "MaxAttempts": ${retry_max_attempts}
        }
      ],
      "Catch": [
        {
          "ErrorEquals": ["States.ALL"],
          "ResultPath": "$.release_failure",
          "Next": "Failed?"
        }
      ],
      "Next": "Failed?"
    },
    "Failed?": {
      "Type": "Choice",
      "Choices": [
        {"Variable": "$.summary.status", "StringEquals": "FAILED", "Next": "AlertMessage"}
      ],
      "Default": "Done"
    },
    "AlertMessage": {
      "Type": "Pass",
      "Parameters": {
        "execution.$": "$$.Execution.Name",
        "state_machine.$": "$$.StateMachine.Name",
        "status.$": "$.summary.status",
        "error.$": "$.summary.error",
        "cause.$": "$.summary.cause",
        "failed_tables.$": "$.summary.failed"
      },
      "ResultPath": "$.alert",
      "Next": "Alert"
    },
    "Alert": {
      "Type": "Task",
      "Resource": "arn:aws:states:::sns:publish",
      "Parameters": {
        "TopicArn": "${alerts_topic_arn}",
        "Subject": "hybrid-ingest batch run failed",
        "Message.$": "States.JsonToString($.alert)"
      },
      "ResultPath": null,
      "Retry": [
        {
          "ErrorEquals": ["SNS.ThrottledException", "SNS.InternalErrorException"],
          "IntervalSeconds": ${retry_interval_seconds},
          "BackoffRate": 2.0,
          "MaxAttempts": ${retry_max_attempts}
        }
      ],
      "Catch": [
        {
          "ErrorEquals": ["States.ALL"],
          "ResultPath": "$.alert_failure",
          "Next": "BatchFailed"
        }
      ],
      "Next": "BatchFailed"
    },
    "BatchFailed": {
      "Type": "Fail",
      "ErrorPath": "$.summary.error",
      "CausePath": "$.summary.cause"
    },
    "Done": {
      "Type": "Pass",
      "Parameters": {
        "status": "SUCCEEDED",
        "results.$": "$.results"
      },
      "End": true
    }
  }
}
