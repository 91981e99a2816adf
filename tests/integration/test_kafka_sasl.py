"""The Kafka security settings work against a real broker that demands SASL: a broker of this
test's own (the local stack's jars, KRaft, a SASL_PLAINTEXT listener with PLAIN and
SCRAM-SHA-256), reached by the project's admin client, producer and consumer through
`client_kwargs` alone; a wrong password and a PLAINTEXT client are refused."""

from __future__ import annotations

import asyncio
import base64
import os
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiokafka.errors import KafkaError
from aiokafka.structs import TopicPartition

from services.platform import stack
from services.platform.kafka import ensure_topics, new_reader, start_producer
from services.platform.settings import Settings

pytestmark = pytest.mark.integration
USER, PASSWORD = "ledger", "s3cret-Pw"
READY_DEADLINE_S = 90.0


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _accepts(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(0.5)
        return probe.connect_ex(("127.0.0.1", port)) == 0


def _properties(data: Path, sasl: int, internal: int, controller: int) -> str:
    plain = (
        "org.apache.kafka.common.security.plain.PlainLoginModule required"
        f' username="{USER}" password="{PASSWORD}" user_{USER}="{PASSWORD}";'
    )
    scram = "org.apache.kafka.common.security.scram.ScramLoginModule required;"
    listeners = (
        f"SASL_PLAINTEXT://127.0.0.1:{sasl},INTERNAL://127.0.0.1:{internal},"
        f"CONTROLLER://127.0.0.1:{controller}"
    )
    return "\n".join([
        "process.roles=broker,controller", "node.id=1",
        f"controller.quorum.bootstrap.servers=127.0.0.1:{controller}",
        f"listeners={listeners}",
        f"advertised.listeners=SASL_PLAINTEXT://127.0.0.1:{sasl},INTERNAL://127.0.0.1:{internal}",
        "listener.security.protocol.map="
        "SASL_PLAINTEXT:SASL_PLAINTEXT,INTERNAL:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "inter.broker.listener.name=INTERNAL", "controller.listener.names=CONTROLLER",
        "sasl.enabled.mechanisms=PLAIN,SCRAM-SHA-256",
        f"listener.name.sasl_plaintext.plain.sasl.jaas.config={plain}",
        f"listener.name.sasl_plaintext.scram-sha-256.sasl.jaas.config={scram}",
        f"log.dirs={data}", "auto.create.topics.enable=false", "log.retention.ms=-1",
        "offsets.topic.replication.factor=1", "offsets.topic.num.partitions=1",
        "transaction.state.log.replication.factor=1", "transaction.state.log.min.isr=1",
        "share.coordinator.state.topic.replication.factor=1",
        "share.coordinator.state.topic.min.isr=1", "group.initial.rebalance.delay.ms=0",
    ]) + "\n"  # fmt: skip


@pytest.fixture(scope="module")
def sasl_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A one-node broker whose client listener demands SASL; stopped after the module."""
    home = tmp_path_factory.mktemp("sasl-kafka")
    sasl, internal, controller = _free_port(), _free_port(), _free_port()
    config = home / "server.properties"
    config.write_text(_properties(home / "data", sasl, internal, controller))
    java = [stack._java(), "-cp", f"{stack._ensure_kafka_libs()}/*"]
    cluster_id = base64.urlsafe_b64encode(os.urandom(16)).decode().rstrip("=").lstrip("-")
    subprocess.run(
        [*java, "kafka.tools.StorageTool", "format", "--standalone", "-t", cluster_id,
         "-c", str(config), "--add-scram", f"SCRAM-SHA-256=[name={USER},password={PASSWORD}]"],
        check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    log = (home / "kafka.log").open("wb")
    broker = subprocess.Popen(
        [*java[:1], "-Xmx384m", *java[1:], "kafka.Kafka", str(config)],
        stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + READY_DEADLINE_S
        while not _accepts(sasl):  # polling a port: the broker's own readiness
            assert broker.poll() is None, (home / "kafka.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "the SASL broker did not start"
            time.sleep(0.2)
        yield f"127.0.0.1:{sasl}"
    finally:
        broker.terminate()
        try:
            broker.wait(30)
        except subprocess.TimeoutExpired:
            broker.kill()
            broker.wait()
        log.close()


def _settings(bootstrap: str, **security: object) -> Settings:
    prefix = f"sasl-{os.urandom(4).hex()}."
    return Settings.model_validate({
        "kafka_bootstrap": bootstrap, "topic_partitions": 1,
        "usage_topic": prefix + "credits.usage.v1",
        "commands_topic": prefix + "credits.commands.v1",
        "ledger_topic": prefix + "credits.ledger.v1",
        "alerts_topic": prefix + "credits.alerts.v1",
        **security,
    })  # fmt: skip


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-256"])
async def test_admin_producer_and_consumer_authenticate(
    sasl_bootstrap: str, mechanism: str
) -> None:
    settings = _settings(
        sasl_bootstrap, kafka_security_protocol="SASL_PLAINTEXT", kafka_sasl_mechanism=mechanism,
        kafka_sasl_username=USER, kafka_sasl_password=PASSWORD,
    )  # fmt: skip
    await ensure_topics(settings, timeout_s=60)  # the admin client
    producer = await start_producer(settings, wait_s=30)
    try:
        await producer.send_and_wait(settings.usage_topic, b"{}", key=b"acct")
    finally:
        await producer.stop()
    consumer = new_reader(settings, enable_auto_commit=False)
    await consumer.start()
    try:
        consumer.assign([TopicPartition(settings.usage_topic, 0)])
        await consumer.seek_to_beginning()
        records = await consumer.getmany(timeout_ms=10_000)
        assert [r.value for batch in records.values() for r in batch] == [b"{}"]
    finally:
        await consumer.stop()


async def _connects(settings: Settings) -> bool:
    try:
        producer = await asyncio.wait_for(start_producer(settings), 30)
    except (KafkaError, OSError, TimeoutError):
        return False
    await producer.stop()
    return True


async def test_a_wrong_password_and_plaintext_are_refused(sasl_bootstrap: str) -> None:
    right = {"kafka_security_protocol": "SASL_PLAINTEXT", "kafka_sasl_username": USER}
    assert await _connects(_settings(sasl_bootstrap, **right, kafka_sasl_password=PASSWORD))
    assert not await _connects(_settings(sasl_bootstrap, **right, kafka_sasl_password="not-it"))
    assert not await _connects(_settings(sasl_bootstrap))  # PLAINTEXT to a SASL listener
