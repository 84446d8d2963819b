"""What every command needs, built once per invocation from the environment and passed down."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

from hybrid_ingest.aws import Clients
from hybrid_ingest.config import Settings
from hybrid_ingest.errors import ConfigError
from hybrid_ingest.lake import Lake
from hybrid_ingest.registry import Registry
from hybrid_ingest.state import StateStore


@dataclass
class AppContext:
    settings: Settings

    def require_stack(self) -> None:
        if self.settings.endpoint_url is None and not self.settings.lake_uri.startswith("s3://"):
            raise ConfigError(
                "no local stack is running and no AWS lake is configured: run `hybrid-ingest local up` "
                "(or set HYBRID_INGEST_LAKE_URI=s3://... for AWS)"
            )

    @cached_property
    def clients(self) -> Clients:
        self.require_stack()
        return Clients(self.settings)

    @cached_property
    def lake(self) -> Lake:
        return Lake.from_uri(self.settings.lake_uri, self.settings.endpoint_url, self.settings.region)

    @cached_property
    def registry(self) -> Registry:
        return Registry(self.clients.dynamodb, self.settings.names.registry_table)

    @cached_property
    def store(self) -> StateStore:
        names = self.settings.names
        return StateStore(self.clients.dynamodb, names.state_table, names.runs_table)
