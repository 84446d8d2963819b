# DynamoDB tables of hybrid_ingest (every key is pk/sk strings):
#   registry: schemas by fingerprint and version, table specs
#   state:    shard checkpoints, watermarks, run locks (leases); TTL on "ttl"
#             removes expired tombstones/leases
#   runs:     run history of the batch workflow and the jobs

locals {
  dynamodb_tables = {
    registry = { name = local.names.registry_table, ttl = false }
    state    = { name = local.names.state_table, ttl = true }
    runs     = { name = local.names.runs_table, ttl = true }
  }
}

resource "aws_dynamodb_table" "this" {
  for_each = local.dynamodb_tables

  name                        = each.value.name
  billing_mode                = "PAY_PER_REQUEST"
  hash_key                    = "pk"
  range_key                   = "sk"
  deletion_protection_enabled = true

  attribute {
    name = "pk"
    type = "S"
  }

  attribute {
    name = "sk"
    type = "S"
  }

  point_in_time_recovery {
    enabled = true
  }

  server_side_encryption {
    enabled     = true
    kms_key_arn = aws_kms_key.main.arn
  }

  dynamic "ttl" {
    for_each = each.value.ttl ? [1] : []
    content {
      attribute_name = "ttl"
      enabled        = true
    }
  }
}
