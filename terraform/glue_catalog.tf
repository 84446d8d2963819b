# Glue Data Catalog. The curated database's tables are Apache Iceberg tables
# that the merge job creates and commits through pyiceberg's Glue catalog (one
# snapshot per table per run; Athena reads them through the same catalog), so
# terraform owns only the databases here. The raw
# database gets one table over raw/ with partition projection: Athena finds
# raw/<table>/ingest_date=.../ingest_hour=... without any partition being
# registered (handy for debugging and replay audits).

resource "aws_glue_catalog_database" "curated" {
  name         = local.names.curated_database
  description  = "hybrid-ingest curated tables (Apache Iceberg, committed by the merge job)"
  location_uri = "${local.lake_uri}/${local.zones.curated}"
}

resource "aws_glue_catalog_database" "raw" {
  name         = local.names.raw_database
  description  = "hybrid-ingest raw change events as written by the stream consumer"
  location_uri = "${local.lake_uri}/${local.zones.raw}"
}

resource "aws_glue_catalog_table" "raw_changes" {
  name          = "changes"
  database_name = aws_glue_catalog_database.raw.name
  description   = "Raw change events of every table; filter on source_table (injected projection) and ingest_date."
  table_type    = "EXTERNAL_TABLE"

  parameters = {
    "classification"                  = "parquet"
    "EXTERNAL"                        = "TRUE"
    "projection.enabled"              = "true"
    "projection.source_table.type"    = "injected"
    "projection.ingest_date.type"     = "date"
    "projection.ingest_date.format"   = "yyyy-MM-dd"
    "projection.ingest_date.range"    = "${var.raw_projection_start_date},NOW"
    "projection.ingest_date.interval" = "1"
    "projection.ingest_date.unit"     = "DAYS"
    "projection.ingest_hour.type"     = "integer"
    "projection.ingest_hour.range"    = "0,23"
    "projection.ingest_hour.digits"   = "2"
    "storage.location.template"       = "${local.lake_uri}/${local.zones.raw}$${source_table}/ingest_date=$${ingest_date}/ingest_hour=$${ingest_hour}"
    "parquet.compression"             = "SNAPPY"
  }

  partition_keys {
    name = "source_table"
    type = "string"
  }

  partition_keys {
    name = "ingest_date"
    type = "string"
  }

  partition_keys {
    name = "ingest_hour"
    type = "string"
  }

  storage_descriptor {
    location      = "${local.lake_uri}/${local.zones.raw}"
    input_format  = "org.apache.hadoop.hive.ql.io.parquet.MapredParquetInputFormat"
    output_format = "org.apache.hadoop.hive.ql.io.parquet.MapredParquetOutputFormat"

    ser_de_info {
      serialization_library = "org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe"
    }

    dynamic "columns" {
      for_each = var.raw_table_columns
      content {
        name = columns.value.name
        type = columns.value.type
      }
    }
  }
}

# Encryption of everything Glue jobs write outside the lake's own SSE: job
# bookmarks, CloudWatch logs and S3 temp/shuffle output.
resource "aws_glue_security_configuration" "jobs" {
  name = var.name_prefix

  encryption_configuration {
    cloudwatch_encryption {
      cloudwatch_encryption_mode = "SSE-KMS"
      kms_key_arn                = aws_kms_key.main.arn
    }

    job_bookmarks_encryption {
      job_bookmarks_encryption_mode = "CSE-KMS"
      kms_key_arn                   = aws_kms_key.main.arn
    }

    s3_encryption {
      s3_encryption_mode = "SSE-KMS"
      kms_key_arn        = aws_kms_key.main.arn
    }
  }
}

resource "aws_glue_data_catalog_encryption_settings" "this" {
  count = var.manage_catalog_encryption ? 1 : 0

  data_catalog_encryption_settings {
    connection_password_encryption {
      return_connection_password_encrypted = true
      aws_kms_key_id                       = aws_kms_key.main.arn
    }

    encryption_at_rest {
      catalog_encryption_mode = "SSE-KMS"
      sse_aws_kms_key_id      = aws_kms_key.main.arn
    }
  }
}
