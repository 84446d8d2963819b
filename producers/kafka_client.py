"""The Kafka consumer the bridge reads with: settings from the command line, secrets from the environment.

Connection and security settings map one to one onto ``kafka.KafkaConsumer``'s
own (security protocol, SSL files, SASL mechanism and user), plus a checked
pass-through for the client's other plain settings (timeouts, fetch sizes,
client id). Passwords are never command-line arguments, which any user of the
machine can read in ``ps``: they come from an environment variable or a file.

The bridge owns the settings its guarantees rest on: no auto-commit (offsets
move only after the spool accepted), the group, and how many records a poll
may return.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kafka import KafkaConsumer
from kafka.errors import KafkaError

from hybrid_ingest.errors import ConfigError, SourceError

SASL_PASSWORD_ENV = "HYBRID_INGEST_KAFKA_SASL_PASSWORD"
SSL_PASSWORD_ENV = "HYBRID_INGEST_KAFKA_SSL_PASSWORD"
SECURITY_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
TOPIC_NAME = re.compile(r"[A-Za-z0-9._-]{1,249}")  # Kafka's own rule for topic names

# plain-valued KafkaConsumer settings a user may pass through, with the type their value is read as
PASSTHROUGH: dict[str, type] = {
    "allow_auto_create_topics": bool, "bootstrap_timeout_ms": int, "check_crcs": bool, "client_id": str,
    "client_rack": str, "connections_max_idle_ms": int, "fetch_max_bytes": int, "fetch_max_wait_ms": int,
    "fetch_min_bytes": int,
    "group_instance_id": str, "heartbeat_interval_ms": int, "isolation_level": str,
    "max_partition_fetch_bytes": int, "max_poll_interval_ms": int, "metadata_max_age_ms": int,
    "receive_buffer_bytes": int, "reconnect_backoff_max_ms": int, "reconnect_backoff_ms": int,
    "request_timeout_ms": int, "retry_backoff_ms": int, "sasl_kerberos_domain_name": str,
    "sasl_kerberos_service_name": str, "send_buffer_bytes": int, "session_timeout_ms": int,
    "ssl_check_hostname": bool, "ssl_ciphers": str, "ssl_crlfile": str,
}


@dataclass(frozen=True)
class KafkaSettings:
    """Everything needed to open the bridge's consumer; secrets already read (see ``read_secret``)."""

    bootstrap_servers: tuple[str, ...]
    group: str
    security_protocol: str = "PLAINTEXT"
    ssl_cafile: Path | None = None
    ssl_certfile: Path | None = None
    ssl_keyfile: Path | None = None
    ssl_password: str | None = None
    sasl_mechanism: str | None = None
    sasl_username: str | None = None
    sasl_password: str | None = None
    auto_offset_reset: str = "earliest"
    options: Mapping[str, Any] = field(default_factory=dict)

    def consumer_config(self, max_records: int) -> dict[str, Any]:
        """``KafkaConsumer`` keyword arguments; ConfigError if the settings do not fit together."""
        if self.security_protocol not in SECURITY_PROTOCOLS:
            raise ConfigError(f"security protocol must be one of {', '.join(SECURITY_PROTOCOLS)}, "
                              f"got {self.security_protocol!r}")
        sasl = self.security_protocol.startswith("SASL_")
        if sasl and self.sasl_mechanism is None:
            raise ConfigError(f"security protocol {self.security_protocol} needs --sasl-mechanism")
        if not sasl and self.sasl_mechanism is not None:
            raise ConfigError(f"--sasl-mechanism needs security protocol SASL_PLAINTEXT or SASL_SSL, "
                              f"not {self.security_protocol}")
        if sasl and (self.sasl_username is None or self.sasl_password is None):
            raise ConfigError(f"SASL {self.sasl_mechanism} needs --sasl-username and a password "
                              f"(${SASL_PASSWORD_ENV} or --sasl-password-file)")
        config: dict[str, Any] = {
            **self.options,
            "bootstrap_servers": list(self.bootstrap_servers), "group_id": self.group,
            "enable_auto_commit": False, "auto_offset_reset": self.auto_offset_reset,
            "max_poll_records": max_records, "security_protocol": self.security_protocol,
        }
        files = {"ssl_cafile": self.ssl_cafile, "ssl_certfile": self.ssl_certfile, "ssl_keyfile": self.ssl_keyfile}
        config.update({key: str(path) for key, path in files.items() if path is not None})
        if self.ssl_password is not None:
            config["ssl_password"] = self.ssl_password
        if sasl:
            config.update(sasl_mechanism=self.sasl_mechanism, sasl_plain_username=self.sasl_username,
                          sasl_plain_password=self.sasl_password)
        return config


def read_secret(environ: Mapping[str, str], variable: str, path: Path | None) -> str | None:
    """A password from ``path`` (its first line) if given, else from the environment variable, else None."""
    if path is not None:
        try:
            text = path.read_text()
        except OSError as exc:
            raise ConfigError(f"cannot read the password file {path}: {exc.strerror}") from exc
        lines = text.splitlines()
        return lines[0] if lines else ""
    return environ.get(variable)


def parse_topics(pairs: Iterable[str]) -> dict[str, str]:
    """``TOPIC=TABLE`` pairs as a mapping; ConfigError on a malformed pair or a topic given twice."""
    topics: dict[str, str] = {}
    for pair in pairs:
        topic, sep, table = pair.partition("=")
        if not sep or not topic or not table:
            raise ConfigError(f"--topic expects TOPIC=TABLE, got {pair!r}")
        if not TOPIC_NAME.fullmatch(topic):
            raise ConfigError(f"{topic!r} is not a Kafka topic name (letters, digits, '.', '_', '-')")
        if topic in topics:
            raise ConfigError(f"topic {topic!r} is given twice")
        topics[topic] = table
    return topics


def parse_options(pairs: Sequence[str]) -> dict[str, Any]:
    """``KEY=VALUE`` pass-through settings, each value read as its setting's type."""
    options: dict[str, Any] = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        kind = PASSTHROUGH.get(key)
        if not sep or kind is None:
            raise ConfigError(f"--consumer-option expects KEY=VALUE with KEY one of {', '.join(sorted(PASSTHROUGH))}; "
                              f"got {pair!r}")
        if kind is bool:
            if text.lower() not in ("true", "false"):
                raise ConfigError(f"--consumer-option {key} expects true or false, got {text!r}")
            options[key] = text.lower() == "true"
        elif kind is int:
            try:
                options[key] = int(text)
            except ValueError:
                raise ConfigError(f"--consumer-option {key} expects an integer, got {text!r}") from None
        else:
            options[key] = text
    return options


def open_consumer(config: Mapping[str, Any]) -> Any:
    """A connected ``KafkaConsumer``; SourceError (one line) if the brokers cannot be reached or refuse us."""
    try:
        return KafkaConsumer(**config)
    except KafkaError as exc:
        servers = ",".join(config.get("bootstrap_servers", []))
        raise SourceError(f"cannot connect to Kafka at {servers}: {exc}") from exc


def check_topics(consumer: Any, topics: Iterable[str]) -> None:
    """Refuse a topic the cluster does not have (usually a typo) rather than wait for it silently."""
    try:
        missing = sorted(topic for topic in topics if not consumer.partitions_for_topic(topic))
    except KafkaError as exc:
        raise SourceError(f"cannot read Kafka's topic list: {exc}") from exc
    if missing:
        raise SourceError(f"topic(s) {', '.join(missing)} do not exist in the Kafka cluster")
