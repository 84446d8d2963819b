# Optional VPC placement of the Glue jobs (var.glue_subnet_id). Glue in a
# private subnet reaches AWS through VPC endpoints: gateways for S3 and
# DynamoDB, interface endpoints for Glue, Kinesis, CloudWatch Logs and metrics,
# STS and KMS. Glue requires its security group to allow all TCP from itself
# (driver <-> executors).

data "aws_subnet" "glue" {
  count = local.glue_in_vpc ? 1 : 0
  id    = var.glue_subnet_id
}

data "aws_vpc" "glue" {
  count = local.glue_in_vpc ? 1 : 0
  id    = data.aws_subnet.glue[0].vpc_id
}

locals {
  interface_endpoint_services = local.glue_in_vpc && var.create_vpc_endpoints ? toset([
    "glue", "kinesis-streams", "logs", "monitoring", "sts", "kms",
  ]) : toset([])
  gateway_endpoint_services = local.glue_in_vpc && var.create_vpc_endpoints ? toset(["s3", "dynamodb"]) : toset([])
}

resource "aws_security_group" "glue" {
  #checkov:skip=CKV2_AWS_5:Attached to the Glue NETWORK connection (glue_jobs.tf), which checkov does not follow.
  count = local.glue_in_vpc ? 1 : 0

  name        = "${var.name_prefix}-glue"
  description = "Glue jobs of ${var.name_prefix}: self traffic and HTTPS to AWS endpoints"
  vpc_id      = data.aws_subnet.glue[0].vpc_id

  lifecycle {
    precondition {
      condition     = var.vpc_id == null || var.vpc_id == data.aws_subnet.glue[0].vpc_id
      error_message = "glue_subnet_id must belong to vpc_id."
    }
  }
}

resource "aws_vpc_security_group_ingress_rule" "glue_self" {
  #checkov:skip=CKV_AWS_24:Source is the group itself, not 0.0.0.0/0 (Glue requires all TCP from itself).
  #checkov:skip=CKV_AWS_25:Source is the group itself, not 0.0.0.0/0 (Glue requires all TCP from itself).
  #checkov:skip=CKV_AWS_260:Source is the group itself, not 0.0.0.0/0 (Glue requires all TCP from itself).
  count = local.glue_in_vpc ? 1 : 0

  security_group_id            = aws_security_group.glue[0].id
  description                  = "Glue driver and executors talk to each other"
  ip_protocol                  = "tcp"
  from_port                    = 0
  to_port                      = 65535
  referenced_security_group_id = aws_security_group.glue[0].id
}

resource "aws_vpc_security_group_egress_rule" "glue_self" {
  count = local.glue_in_vpc ? 1 : 0

  security_group_id            = aws_security_group.glue[0].id
  description                  = "Glue driver and executors talk to each other"
  ip_protocol                  = "tcp"
  from_port                    = 0
  to_port                      = 65535
  referenced_security_group_id = aws_security_group.glue[0].id
}

resource "aws_vpc_security_group_egress_rule" "glue_https_vpc" {
  count = local.glue_in_vpc ? 1 : 0

  security_group_id = aws_security_group.glue[0].id
  description       = "HTTPS to the interface endpoints in the VPC"
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
  cidr_ipv4         = data.aws_vpc.glue[0].cidr_block
}

resource "aws_vpc_security_group_egress_rule" "glue_https_gateways" {
  for_each = local.gateway_endpoint_services

  security_group_id = aws_security_group.glue[0].id
  description       = "HTTPS to the ${each.key} gateway endpoint"
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
  prefix_list_id    = aws_vpc_endpoint.gateway[each.key].prefix_list_id
}

resource "aws_security_group" "endpoints" {
  count = length(local.interface_endpoint_services) > 0 ? 1 : 0

  name        = "${var.name_prefix}-vpc-endpoints"
  description = "Interface endpoints used by the ${var.name_prefix} Glue jobs"
  vpc_id      = data.aws_subnet.glue[0].vpc_id
}

resource "aws_vpc_security_group_ingress_rule" "endpoints_from_glue" {
  count = length(local.interface_endpoint_services) > 0 ? 1 : 0

  security_group_id            = aws_security_group.endpoints[0].id
  description                  = "HTTPS from the Glue jobs"
  ip_protocol                  = "tcp"
  from_port                    = 443
  to_port                      = 443
  referenced_security_group_id = aws_security_group.glue[0].id
}

resource "aws_vpc_endpoint" "gateway" {
  for_each = local.gateway_endpoint_services

  vpc_id            = data.aws_subnet.glue[0].vpc_id
  service_name      = "com.amazonaws.${local.region}.${each.key}"
  vpc_endpoint_type = "Gateway"
  route_table_ids   = var.vpc_endpoint_route_table_ids
}

resource "aws_vpc_endpoint" "interface" {
  for_each = local.interface_endpoint_services

  vpc_id              = data.aws_subnet.glue[0].vpc_id
  service_name        = "com.amazonaws.${local.region}.${each.key}"
  vpc_endpoint_type   = "Interface"
  subnet_ids          = [var.glue_subnet_id]
  security_group_ids  = [aws_security_group.endpoints[0].id]
  private_dns_enabled = true
}
