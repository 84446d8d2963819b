# The two Glue 5.0 (Spark 3.5, Python 3.11) jobs. Both run a script from the
# release the build uploaded (buildspec.yml) and import the hybrid_ingest
# library from its wheel:
#   * --extra-py-files puts the pure-Python wheel on the driver's and executors'
#     sys.path (a wheel is a zip). It is NOT given to --additional-python-modules,
#     because pip would then also pull the library's local-only dependencies
#     (pyspark, moto, ...) into the job;
#   * --additional-python-modules pip-installs the third-party modules the
#     library needs on Glue (var.glue_additional_python_modules), each pinned to
#     the exact version the tests ran with; that includes pyiceberg (and
#     pyiceberg-core for the partition transforms), with which the merge job
#     commits the curated Iceberg tables. PyPI pins rather than wheels the build
#     uploads: Glue 5.0 installs from PyPI natively, and the pins are checked
#     against pyproject.toml's ranges by tests/infra.
#
# Job arguments the scripts read: --name_prefix, --lake_uri, --region,
# --metrics_namespace, and for the streaming job --stream, --prefix,
# --checkpoint_location, --window_seconds, --starting_position. The workflow
# passes --table (and may override --engine and the worker count) per run.

locals {
  glue_common_arguments = {
    "--job-language"                     = "python"
    "--extra-py-files"                   = local.library_wheel_uri
    "--additional-python-modules"        = join(",", var.glue_additional_python_modules)
    "--TempDir"                          = "${local.scripts_uri}/temp/"
    "--enable-metrics"                   = "true"
    "--enable-observability-metrics"     = "true"
    "--enable-continuous-cloudwatch-log" = "true"
    "--continuous-log-logGroup"          = aws_cloudwatch_log_group.glue.name
    "--enable-spark-ui"                  = "true"
    "--spark-event-logs-path"            = "${local.scripts_uri}/spark-logs/"
    "--enable-job-insights"              = "true"
    "--name_prefix"                      = var.name_prefix
    "--lake_uri"                         = local.lake_uri
    "--metrics_namespace"                = local.metrics_namespace
    "--region"                           = local.region
  }
}

resource "aws_cloudwatch_log_group" "glue" {
  name              = "/aws-glue/${var.name_prefix}"
  retention_in_days = var.glue_log_retention_days
  kms_key_id        = aws_kms_key.main.arn
}

resource "aws_glue_connection" "network" {
  count = local.glue_in_vpc ? 1 : 0

  name            = "${var.name_prefix}-network"
  connection_type = "NETWORK"

  physical_connection_requirements {
    availability_zone      = data.aws_subnet.glue[0].availability_zone
    subnet_id              = var.glue_subnet_id
    security_group_id_list = [aws_security_group.glue[0].id]
  }
}

# compact + merge: DuckDB kernel on the driver for small and medium runs, Spark
# kernel for large ones (chosen per run by --engine auto).
resource "aws_glue_job" "merge" {
  name                   = local.names.merge_job
  description            = "hybrid-ingest compact+merge of raw and landing into curated (one run per table)"
  role_arn               = aws_iam_role.glue_merge.arn
  glue_version           = "5.0"
  worker_type            = var.merge_worker_type
  number_of_workers      = var.merge_number_of_workers
  execution_class        = var.merge_execution_class
  timeout                = var.merge_timeout_minutes
  max_retries            = 0 # the workflow retries, with the lock held, so a retry never races a second run
  security_configuration = aws_glue_security_configuration.jobs.name
  connections            = aws_glue_connection.network[*].name

  command {
    name            = "glueetl"
    python_version  = "3"
    script_location = "${local.release_uri}/glue_jobs/merge_job.py"
  }

  execution_property {
    max_concurrent_runs = var.merge_max_concurrent_runs
  }

  default_arguments = merge(local.glue_common_arguments, {
    "--engine" = "auto"
  })

  lifecycle {
    precondition {
      condition     = var.merge_max_concurrent_runs >= var.workflow_map_concurrency
      error_message = "merge_max_concurrent_runs must be at least workflow_map_concurrency, or the Map's job runs fail with ConcurrentRunsExceededException."
    }
  }
}

# stream -> raw: a long-running Spark structured-streaming job (forEachBatch)
# reading the change stream and writing raw/ Parquet files. Terraform defines
# it; the build starts it when it is not running (buildspec.yml) and the
# iterator-age alarm fires if it stops.
resource "aws_glue_job" "stream" {
  name                   = local.names.streaming_job
  description            = "hybrid-ingest Kinesis change stream -> s3 raw/ (Avro decode, dedup, DLQ)"
  role_arn               = aws_iam_role.glue_stream.arn
  glue_version           = "5.0"
  worker_type            = var.stream_worker_type
  number_of_workers      = var.stream_number_of_workers
  max_retries            = 3
  security_configuration = aws_glue_security_configuration.jobs.name
  connections            = aws_glue_connection.network[*].name

  command {
    name            = "gluestreaming"
    python_version  = "3"
    script_location = "${local.release_uri}/streaming_consumer/glue_streaming_job.py"
  }

  execution_property {
    max_concurrent_runs = 1
  }

  default_arguments = merge(local.glue_common_arguments, {
    "--stream"              = aws_kinesis_stream.changes.name
    "--stream_arn"          = aws_kinesis_stream.changes.arn
    "--prefix"              = var.name_prefix
    "--checkpoint_location" = "${local.lake_uri}/${local.checkpoint_prefix}stream/"
    "--window_seconds"      = tostring(var.stream_window_seconds)
    "--starting_position"   = var.stream_starting_position
  })
}
