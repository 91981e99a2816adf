"""Where the tests' real Kafka and Postgres come from, in order:
1. URLs from the environment (CREDITLEDGER_KAFKA_BOOTSTRAP, CREDITLEDGER_DATABASE_URL);
2. Docker through testcontainers, when an engine answers;
3. the project's local launcher (Kafka from Maven Central jars, Debian's Postgres binaries), on
   a stack of the tests' own (`.creditledger/test-stack`: other ports and data than the
   `creditledger stack up` that `make run` serves), so a test that restarts its broker, or
   deletes its topics, never touches what a user runs; stopped at the end when the session
   started it.
Every test then gets its own namespace (database and topic prefix), so runs never collide.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from services.platform import stack
from services.platform.settings import Settings

TEST_STACK_DIR = Path(__file__).resolve().parents[1] / ".creditledger" / "test-stack"


@dataclass(frozen=True)
class Servers:
    kafka_bootstrap: str
    database_url: str  # of a database we may connect to in order to create others
    origin: str
    stack_dir: Path | None = None  # the local launcher's stack, which tests may restart


@contextlib.contextmanager
def real_servers() -> Iterator[Servers]:
    kafka = os.environ.get("CREDITLEDGER_KAFKA_BOOTSTRAP")
    database = os.environ.get("CREDITLEDGER_DATABASE_URL")
    if kafka and database:
        yield Servers(kafka, database, "environment")
    elif _docker_answers():
        with _containers() as servers:
            yield servers
    else:
        with private_stack(TEST_STACK_DIR) as servers:
            yield servers


@contextlib.contextmanager
def private_stack(stack_dir: Path) -> Iterator[Servers]:
    """A local stack of the tests' own, stopped when the last run of the tests using it ends:
    each run holds a lease (a file named by its pid) while it uses the stack."""
    leases = stack_dir / "leases"
    leases.mkdir(parents=True, exist_ok=True)
    lease = leases / str(os.getpid())
    lease.touch()
    try:
        endpoints = stack.stack_up(stack_dir)
        kafka, database = endpoints.kafka_bootstrap, endpoints.database_url
        yield Servers(kafka, database, "local launcher", stack_dir)
    finally:
        lease.unlink(missing_ok=True)
        if not _live_leases(leases):
            stack.stack_down(stack_dir)


def _live_leases(leases: Path) -> list[Path]:
    live = []
    for lease in leases.iterdir():
        try:
            os.kill(int(lease.name), 0)
        except (ValueError, ProcessLookupError):
            lease.unlink(missing_ok=True)  # its run ended without removing it (killed)
            continue
        except PermissionError:
            pass  # alive, another user's
        live.append(lease)
    return live


def _docker_answers() -> bool:
    try:
        import docker

        docker.from_env(timeout=3).ping()
    except Exception:  # no client library, no socket, no engine: all mean "no Docker"
        return False
    return True


@contextlib.contextmanager
def _containers() -> Iterator[Servers]:
    from testcontainers.kafka import KafkaContainer
    from testcontainers.postgres import PostgresContainer

    # cp-kafka 8.1 is Apache Kafka 4.1 in KRaft mode; testcontainers' Kafka module targets it.
    with (
        KafkaContainer("confluentinc/cp-kafka:8.1.0").with_kraft() as kafka,
        PostgresContainer("postgres:17", username="postgres", password="postgres") as pg,
    ):
        url = pg.get_connection_url(driver=None)
        yield Servers(kafka.get_bootstrap_server(), url, "testcontainers")


def with_database(url: str, database: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path="/" + database))


def namespace_settings(servers: Servers, run_id: str | None = None) -> Settings:
    """Settings for one isolated namespace: its own database name and topic prefix."""
    run_id = run_id or uuid.uuid4().hex[:12]
    prefix = f"test-{run_id}."
    return Settings(
        kafka_bootstrap=servers.kafka_bootstrap,
        database_url=with_database(servers.database_url, f"cl_test_{run_id}"),
        admin_token=f"adm_test_{run_id}",
        usage_topic=prefix + "credits.usage.v1",
        commands_topic=prefix + "credits.commands.v1",
        ledger_topic=prefix + "credits.ledger.v1",
        alerts_topic=prefix + "credits.alerts.v1",
        topic_partitions=3,
        consumer_group=prefix + "writer",
        projector_group=prefix + "projector",
        fetch_timeout_ms=50,
        api_port=0,  # any free port: the tests that need HTTP set their own
        expiry_scan_interval_s=3600,  # off, but for tests of the scheduler: event times are past
    )
