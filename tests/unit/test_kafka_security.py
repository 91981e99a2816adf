"""Kafka security settings reach every client: one function builds the kwargs, and no module
but services/platform/kafka.py constructs an aiokafka client."""

from __future__ import annotations

import ast
import ssl
from pathlib import Path

import pytest
from pydantic import SecretStr

from services.platform.kafka import (
    _configs,
    client_kwargs,
    min_insync_replicas,
    new_admin,
    new_consumer,
    new_producer,
    new_reader,
)
from services.platform.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
PRODUCTION = ("services", "projections", "schemas")
CLIENTS = {"AIOKafkaProducer", "AIOKafkaConsumer", "AIOKafkaAdminClient"}
FACTORY = ROOT / "services" / "platform" / "kafka.py"


def _constructions(path: Path, root: Path = ROOT) -> list[str]:
    """`file:line name` of each call of an aiokafka client class in `path`."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Call):
            func = node.func
            name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", None)
            if name in CLIENTS:
                found.append(f"{path.relative_to(root)}:{node.lineno} {name}")
    return found


def test_no_module_but_the_factory_constructs_an_aiokafka_client() -> None:
    sources = [p for top in PRODUCTION for p in (ROOT / top).rglob("*.py")]
    assert len(sources) > 50  # the scan sees the code base
    elsewhere = [hit for p in sources if p != FACTORY for hit in _constructions(p)]
    assert elsewhere == [], "build Kafka clients with services/platform/kafka.py"
    assert {hit.split()[-1] for hit in _constructions(FACTORY)} == CLIENTS


def test_the_scan_finds_a_construction(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text("import aiokafka\nc = aiokafka.AIOKafkaConsumer(bootstrap_servers='x')\n")
    assert _constructions(sample, tmp_path) == ["sample.py:2 AIOKafkaConsumer"]


def _settings(**security: object) -> Settings:
    return Settings.model_validate({"kafka_bootstrap": "broker:9093", **security})


def test_plaintext_by_default() -> None:
    assert client_kwargs(_settings()) == {
        "bootstrap_servers": "broker:9093",
        "security_protocol": "PLAINTEXT",
    }


def test_ssl_verifies_the_broker_and_sends_no_password(tmp_path: Path) -> None:
    kwargs = client_kwargs(_settings(kafka_security_protocol="SSL"))
    assert kwargs["security_protocol"] == "SSL"
    context = kwargs["ssl_context"]
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    assert not {"sasl_mechanism", "sasl_plain_username", "sasl_plain_password"} & set(kwargs)


def test_sasl_plaintext_sends_the_credentials_without_tls() -> None:
    settings = _settings(
        kafka_security_protocol="SASL_PLAINTEXT",
        kafka_sasl_mechanism="SCRAM-SHA-512",
        kafka_sasl_username="ledger",
        kafka_sasl_password="s3cret",
    )
    assert isinstance(settings.kafka_sasl_password, SecretStr)
    assert "s3cret" not in repr(settings)  # a logged settings object does not leak it
    assert client_kwargs(settings) == {
        "bootstrap_servers": "broker:9093",
        "security_protocol": "SASL_PLAINTEXT",
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": "ledger",
        "sasl_plain_password": "s3cret",
    }


def test_sasl_ssl_has_both() -> None:
    kwargs = client_kwargs(
        _settings(
            kafka_security_protocol="SASL_SSL",
            kafka_sasl_username="ledger",
            kafka_sasl_password="s3cret",
        )
    )
    assert isinstance(kwargs["ssl_context"], ssl.SSLContext)
    assert kwargs["sasl_mechanism"] == "PLAIN"
    assert kwargs["sasl_plain_password"] == "s3cret"


def test_sasl_without_credentials_is_refused() -> None:
    with pytest.raises(ValueError, match="CREDITLEDGER_KAFKA_SASL_USERNAME"):
        client_kwargs(_settings(kafka_security_protocol="SASL_SSL"))


def test_a_missing_ca_file_fails_at_construction(tmp_path: Path) -> None:
    missing = str(tmp_path / "no-ca.pem")
    with pytest.raises(FileNotFoundError):
        client_kwargs(_settings(kafka_security_protocol="SSL", kafka_ssl_cafile=missing))


def test_an_unknown_protocol_is_refused() -> None:
    with pytest.raises(ValueError, match="kafka_security_protocol"):
        _settings(kafka_security_protocol="TLS")


async def test_every_factory_passes_the_security_settings() -> None:
    # Built inside a running loop (aiokafka wants one), never started: no broker needed.
    settings = _settings(
        kafka_security_protocol="SASL_PLAINTEXT", kafka_sasl_username="u", kafka_sasl_password="p"
    )
    clients = [
        new_producer(settings).client,
        new_consumer(settings, "g", 10)._client,
        new_reader(settings)._client,
        new_admin(settings)._client,
    ]
    for client in clients:
        assert client._security_protocol == "SASL_PLAINTEXT"
        assert client._sasl_plain_username == "u"
        assert client._sasl_plain_password == "p"


def test_topic_settings_follow_replication_and_retention() -> None:
    local = Settings()
    assert local.topic_replication_factor == 1 and local.topic_retention_ms == -1
    assert min_insync_replicas(local) == 1
    production = local.model_copy(update={"topic_replication_factor": 3})
    assert min_insync_replicas(production) == 2
    assert _configs(production, is_input=True) == {
        "retention.ms": "-1",
        "min.insync.replicas": "2",
        "message.timestamp.type": "LogAppendTime",
    }
    kept = production.model_copy(update={"topic_retention_ms": 90 * 86_400_000})
    assert _configs(kept, is_input=False) == {
        "retention.ms": "7776000000",
        "min.insync.replicas": "2",
    }


def test_api_workers_receive_the_password_itself() -> None:
    from services.api.workers import settings_env

    settings = _settings(kafka_security_protocol="SASL_SSL", kafka_sasl_password="s3cret")
    env = settings_env(settings)
    assert env["CREDITLEDGER_KAFKA_SASL_PASSWORD"] == "s3cret"
    assert env["CREDITLEDGER_KAFKA_SECURITY_PROTOCOL"] == "SASL_SSL"
