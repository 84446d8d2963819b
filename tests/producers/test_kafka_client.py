"""The bridge's consumer settings: what reaches kafka-python, and where passwords may come from."""

from __future__ import annotations

from pathlib import Path

import pytest
from kafka import KafkaConsumer

from hybrid_ingest.errors import ConfigError
from producers.kafka_client import (
    PASSTHROUGH,
    SASL_PASSWORD_ENV,
    KafkaSettings,
    parse_options,
    parse_topics,
    read_secret,
)


def test_the_bridge_owns_auto_commit_and_the_group() -> None:
    config = KafkaSettings(("h1:9092", "h2:9092"), "g", options={"enable_auto_commit": True}).consumer_config(500)
    assert config["enable_auto_commit"] is False
    assert (config["group_id"], config["bootstrap_servers"], config["max_poll_records"]) == ("g", ["h1:9092", "h2:9092"], 500)
    assert config["auto_offset_reset"] == "earliest"
    assert "sasl_plain_password" not in config


def test_tls_and_sasl_settings_pass_through(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    config = KafkaSettings(("h:9093",), "g", security_protocol="SASL_SSL", ssl_cafile=ca, sasl_mechanism="SCRAM-SHA-512",
                           sasl_username="bridge", sasl_password="s3cret").consumer_config(10)
    assert config["security_protocol"] == "SASL_SSL"
    assert config["ssl_cafile"] == str(ca)
    assert (config["sasl_mechanism"], config["sasl_plain_username"], config["sasl_plain_password"]) == (
        "SCRAM-SHA-512", "bridge", "s3cret")


@pytest.mark.parametrize(("settings", "message"), [
    (KafkaSettings(("h:1",), "g", security_protocol="SASL_PLAINTEXT"), "needs --sasl-mechanism"),
    (KafkaSettings(("h:1",), "g", security_protocol="SASL_SSL", sasl_mechanism="PLAIN", sasl_username="u"),
     f"a password \\(\\${SASL_PASSWORD_ENV} or --sasl-password-file\\)"),
    (KafkaSettings(("h:1",), "g", sasl_mechanism="PLAIN"), "needs security protocol SASL_PLAINTEXT or SASL_SSL"),
    (KafkaSettings(("h:1",), "g", security_protocol="TLS"), "security protocol must be one of"),
])
def test_settings_that_do_not_fit_together_are_refused(settings: KafkaSettings, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        settings.consumer_config(10)


def test_a_password_comes_from_a_file_or_the_environment(tmp_path: Path) -> None:
    secret = tmp_path / "password"
    secret.write_text("from-file\nignored\n")
    env = {SASL_PASSWORD_ENV: "from-env"}
    assert read_secret(env, SASL_PASSWORD_ENV, secret) == "from-file"
    assert read_secret(env, SASL_PASSWORD_ENV, None) == "from-env"
    assert read_secret({}, SASL_PASSWORD_ENV, None) is None
    with pytest.raises(ConfigError, match="cannot read the password file"):
        read_secret(env, SASL_PASSWORD_ENV, tmp_path / "missing")


def test_pass_through_options_are_typed_and_checked() -> None:
    assert parse_options(["session_timeout_ms=10000", "client_id=erp-bridge", "check_crcs=false"]) == {
        "session_timeout_ms": 10_000, "client_id": "erp-bridge", "check_crcs": False}
    with pytest.raises(ConfigError, match="KEY one of"):
        parse_options(["sasl_plain_password=visible-in-ps"])
    with pytest.raises(ConfigError, match="KEY one of"):
        parse_options(["enable_auto_commit=true"])
    with pytest.raises(ConfigError, match="expects an integer"):
        parse_options(["session_timeout_ms=ten"])


def test_every_pass_through_option_is_a_setting_of_the_installed_client() -> None:
    known = KafkaConsumer.DEFAULT_CONFIG
    assert set(PASSTHROUGH) <= set(known)
    for key, kind in PASSTHROUGH.items():
        assert known[key] is None or isinstance(known[key], kind), key


def test_topics_map_to_tables() -> None:
    assert parse_topics(["erp.orders=orders", "crm-customers=customers"]) == {
        "erp.orders": "orders", "crm-customers": "customers"}
    for bad, message in (("orders", "expects TOPIC=TABLE"), ("a b=orders", "not a Kafka topic name"),
                         ("=orders", "expects TOPIC=TABLE")):
        with pytest.raises(ConfigError, match=message):
            parse_topics([bad])
    with pytest.raises(ConfigError, match="given twice"):
        parse_topics(["t=orders", "t=customers"])
