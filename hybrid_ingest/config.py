"""Typed settings: resource names and where the lake and the AWS endpoint are.

Names default to the terraform defaults (``terraform/variables.tf``: ``name_prefix``),
so the CLI finds on AWS exactly what terraform created and, locally, creates the
same names on the moto stack. Everything is resolved once from the environment
and then passed down as plain data.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from functools import cache
from pathlib import Path

import botocore.session

DEFAULT_PREFIX = "hybrid-ingest"
DEFAULT_REGION = "eu-west-1"
STACK_FILE = "stack.json"
# the boto3 clients ``hybrid_ingest.aws.Clients`` builds: each may have an endpoint of its own
SERVICES = ("kinesis", "dynamodb", "glue", "s3", "stepfunctions", "cloudwatch", "sns")


def _underscored(prefix: str) -> str:
    return prefix.replace("-", "_")


@dataclass(frozen=True)
class Names:
    """Physical names of every AWS resource the code touches (kept in step with terraform)."""

    prefix: str = DEFAULT_PREFIX

    @property
    def stream(self) -> str:
        return f"{self.prefix}-changes"

    @property
    def registry_table(self) -> str:
        return f"{self.prefix}-registry"

    @property
    def state_table(self) -> str:
        return f"{self.prefix}-state"

    @property
    def runs_table(self) -> str:
        return f"{self.prefix}-runs"

    @property
    def curated_database(self) -> str:
        return f"{_underscored(self.prefix)}_curated"

    @property
    def raw_database(self) -> str:
        return f"{_underscored(self.prefix)}_raw"

    @property
    def state_machine(self) -> str:
        return f"{self.prefix}-batch"

    @property
    def merge_job(self) -> str:
        return f"{self.prefix}-merge"

    @property
    def plan_job(self) -> str:
        return f"{self.prefix}-plan"

    @property
    def streaming_job(self) -> str:
        return f"{self.prefix}-stream"

    @property
    def alerts_topic(self) -> str:
        return f"{self.prefix}-alerts"

    @property
    def athena_workgroup(self) -> str:
        return self.prefix

    @property
    def metrics_namespace(self) -> str:
        return "HybridIngest"


@dataclass(frozen=True)
class Settings:
    """Where this process talks to: the AWS endpoint (None = real AWS), region and the lake root."""

    home: Path
    lake_uri: str
    region: str = DEFAULT_REGION
    endpoint_url: str | None = None
    names: Names = field(default_factory=Names)
    # per service (boto3 client name), as AWS_ENDPOINT_URL_<SERVICE> sets it; ahead of endpoint_url
    service_endpoints: Mapping[str, str] = field(default_factory=dict)

    def endpoint_for(self, service: str) -> str | None:
        return self.service_endpoints.get(service, self.endpoint_url)

    @property
    def is_local(self) -> bool:
        return self.endpoint_url is not None and self.lake_uri.startswith("file://")

    @property
    def stack_file(self) -> Path:
        return self.home / STACK_FILE

    def with_endpoint(self, endpoint_url: str | None) -> Settings:
        return replace(self, endpoint_url=endpoint_url)

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Settings:
        """Resolve settings: explicit environment first, then the running local stack's record."""
        env = dict(os.environ if env is None else env)
        home = Path(env.get("HYBRID_INGEST_HOME", ".hybrid-ingest")).resolve()
        endpoint = env.get("AWS_ENDPOINT_URL") or read_stack_endpoint(home)
        lake = env.get("HYBRID_INGEST_LAKE_URI") or (home / "lake").as_uri()
        region = env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or DEFAULT_REGION
        names = Names(prefix=env.get("HYBRID_INGEST_PREFIX", DEFAULT_PREFIX))
        return cls(home=home, lake_uri=lake, region=region, endpoint_url=endpoint, names=names,
                   service_endpoints=service_endpoints(env))


def job_settings(lake_uri: str, region: str, prefix: str, env: dict[str, str] | None = None) -> Settings:
    """Settings of a Glue job run, from its job arguments (the endpoint only from AWS_ENDPOINT_URL)."""
    env = dict(os.environ if env is None else env)
    return Settings(home=Path(tempfile.gettempdir()), lake_uri=lake_uri, region=region,
                    endpoint_url=env.get("AWS_ENDPOINT_URL") or None, names=Names(prefix=prefix),
                    service_endpoints=service_endpoints(env))


@cache
def endpoint_variable(service: str) -> str:
    """botocore's variable for one service's endpoint: AWS_ENDPOINT_URL_ + its service id (KINESIS, SFN...)."""
    service_id = botocore.session.get_session().get_service_model(service).service_id
    return "AWS_ENDPOINT_URL_" + service_id.replace(" ", "_").upper()


def service_endpoints(env: Mapping[str, str]) -> dict[str, str]:
    """The services given an endpoint of their own, the AWS SDKs' way (e.g. only Kinesis on an emulator).

    ``Clients`` passes every client an explicit endpoint, which in botocore outranks these
    variables, so they are read here and handed to each client by ``Settings.endpoint_for``.
    """
    if not any(name.startswith("AWS_ENDPOINT_URL_") for name in env):
        return {}  # the usual case: skip loading service models (~0.4 s) just to name the variables
    return {s: env[endpoint_variable(s)] for s in SERVICES if env.get(endpoint_variable(s))}


def read_stack_endpoint(home: Path) -> str | None:
    """The endpoint of the local stack recorded by ``local up``, if one was started."""
    path = home / STACK_FILE
    if not path.exists():
        return None
    record = json.loads(path.read_text())
    endpoint = record.get("endpoint")
    return str(endpoint) if endpoint else None
