terraform {
  required_version = ">= 1.6"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = "~> 5.70"
    }
  }

  # Partial configuration: bucket, key, region and dynamodb_table are passed by
  # `terraform init -backend-config=...` (see buildspec.yml; the state bucket and
  # the lock table are created by CFN/seed.yaml).
  backend "s3" {
    encrypt = true
  }
}
