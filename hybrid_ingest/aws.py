"""boto3 clients built once from ``Settings`` and passed to every adapter.

Retries are botocore's own (standard mode: exponential backoff with jitter on
throttling and transient errors), not hand-written. Against the local stack the
clients get dummy credentials so no real account is ever touched.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError
from botocore.exceptions import ConnectionError as EndpointUnreachable

from hybrid_ingest.config import Settings

if TYPE_CHECKING:
    from mypy_boto3_cloudwatch import CloudWatchClient
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_glue import GlueClient
    from mypy_boto3_kinesis import KinesisClient
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_sns import SNSClient
    from mypy_boto3_stepfunctions import SFNClient

LOCAL_CREDENTIALS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
# what a missing resource usually means: the stream, tables or catalog were never created
NOT_FOUND = ("ResourceNotFoundException", "EntityNotFoundException", "StateMachineDoesNotExist", "NoSuchBucket")


def retry_config(max_attempts: int = 8, adaptive: bool = False) -> Config:
    """botocore's retry policy for every client; adaptive mode adds client-side rate limiting."""
    return Config(
        retries={"max_attempts": max_attempts, "mode": "adaptive" if adaptive else "standard"},
        connect_timeout=5, read_timeout=60,
    )


def describe_failure(exc: BotoCoreError | ClientError) -> str:
    """What a failed AWS call means to the person at the shell, with the usual cause when it is a local one."""
    if isinstance(exc, EndpointUnreachable):
        url = str(exc.kwargs.get("endpoint_url", "the AWS endpoint"))
        local = urlsplit(url).hostname in LOOPBACK_HOSTS
        return f"cannot reach {url}" + (": is the local stack running? (`hybrid-ingest local up`)" if local else "")
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        code = error.get("Code", "error")
        hint = " (has `hybrid-ingest init` run?)" if code in NOT_FOUND else ""
        return f"AWS {exc.operation_name} refused: {code}: {error.get('Message', '')}{hint}"
    return str(exc)


@dataclass
class Clients:
    """Lazily created clients for one endpoint and region."""

    settings: Settings
    config: Config | None = None

    @cached_property
    def session(self) -> boto3.session.Session:
        kwargs: dict[str, Any] = {"region_name": self.settings.region}
        if self.settings.endpoint_url is not None:
            kwargs.update(LOCAL_CREDENTIALS)
        return boto3.session.Session(**kwargs)

    def client(self, service: str, config: Config | None = None) -> Any:
        return self.session.client(
            service,  # type: ignore[call-overload]
            endpoint_url=self.settings.endpoint_for(service),
            config=config or self.config or retry_config(),
        )

    @cached_property
    def kinesis(self) -> KinesisClient:
        return self.client("kinesis")  # type: ignore[no-any-return]

    @cached_property
    def dynamodb(self) -> DynamoDBClient:
        return self.client("dynamodb")  # type: ignore[no-any-return]

    @cached_property
    def glue(self) -> GlueClient:
        return self.client("glue")  # type: ignore[no-any-return]

    @cached_property
    def s3(self) -> S3Client:
        return self.client("s3")  # type: ignore[no-any-return]

    @cached_property
    def sfn(self) -> SFNClient:
        return self.client("stepfunctions")  # type: ignore[no-any-return]

    @cached_property
    def cloudwatch(self) -> CloudWatchClient:
        return self.client("cloudwatch")  # type: ignore[no-any-return]

    @cached_property
    def sns(self) -> SNSClient:
        return self.client("sns")  # type: ignore[no-any-return]
