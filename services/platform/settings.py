"""Settings from the environment (`CREDITLEDGER_*`). With no Kafka or Postgres URL configured,
the running local stack's are used (`creditledger stack up` starts it)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CREDITLEDGER_", extra="ignore")

    kafka_bootstrap: str | None = None
    database_url: str | None = None
    api_host: str = "127.0.0.1"
    api_port: int = 8080
    admin_token: str | None = None
    ingest_token: str | None = None

    usage_topic: str = "credits.usage.v1"
    commands_topic: str = "credits.commands.v1"
    ledger_topic: str = "credits.ledger.v1"
    alerts_topic: str = "credits.alerts.v1"
    topic_partitions: int = Field(default=6, ge=1, le=1024)
    consumer_group: str = "creditledger-writer"
    projector_group: str = "creditledger-projector"

    # Bounds on every batch: one poll's records (all partitions) at most, and each partition's
    # share becomes one Postgres transaction. 20,000 (about 3,300 per partition of six, close to
    # what one 1 MiB partition fetch holds) pays a batch's fixed costs (about ten statements and
    # a commit) once per ~3,000 events: at 2,000 the writer absorbed 4.5k events/s over 10,000
    # accounts, at 20,000 7.5k (BENCHMARKS.md). Memory stays bounded by it (~300 B a record).
    batch_max_records: int = Field(default=20_000, ge=1, le=100_000)
    # Events stamped further ahead of their log append time are dead-lettered
    # (`occurred-in-future`): a clock that far ahead would draw on grants before they apply.
    max_future_skew_s: float = Field(default=300.0, ge=0, le=7 * 86_400)
    # How much older than a fetch response's arrival a record must be for the merge to trust
    # that response's "caught up" (services/writer/merge.py): broker-writer clock skew plus
    # fetch latency, and replication lag where acks wait for replicas.
    merge_clock_margin_ms: int = Field(default=100, ge=0, le=60_000)
    fetch_timeout_ms: int = Field(default=200, ge=1, le=60_000)
    # How long the broker holds a fetch that finds nothing new. A quiet partition's "caught up"
    # is only as fresh as its last fetch, and the merge takes a record once a fetch sent after
    # it (plus the margin) has come back: this hold is part of every usage record's freshness.
    fetch_max_wait_ms: int = Field(default=20, ge=1, le=500)
    # The most one fetch brings of one partition (aiokafka's max_partition_fetch_bytes): with
    # `batch_max_records`, how large a backlog's batches get (a usage record is ~300 B). At 1 MiB
    # a backlog's batches held ~3,300 events, at 8 MiB ~7,500: Postgres's and the projector's
    # CPU per event fell (PG 207-219 -> 102-189 µs, projector 118-144 -> 100-102; BENCHMARKS.md,
    # fifth round) with the writer's memory unchanged. A caught-up stream's batches are what
    # arrived within `fetch_max_wait_ms`, whatever this bound.
    fetch_max_partition_bytes: int = Field(default=8 * 1_048_576, ge=65_536, le=64 * 1_048_576)
    # Allocations between the cyclic collector's young-generation passes in the writer,
    # projector and API processes (services/platform/gc_policy.py): CPython's default is 700.
    gc_gen0_threshold: int = Field(default=50_000, ge=100, le=10_000_000)
    outbox_batch_max_rows: int = Field(default=5000, ge=1, le=100_000)
    # The read API: bounds on every request (see services/api/README.md).
    api_statement_timeout_ms: int = Field(default=5000, ge=100, le=600_000)
    api_max_body_bytes: int = Field(default=1_048_576, ge=1024, le=64 * 1_048_576)
    api_rate_limit_per_s: float = Field(default=50.0, gt=0)
    api_rate_limit_burst: int = Field(default=100, ge=1)
    api_read_wait_max_ms: int = Field(default=5000, ge=0, le=60_000)
    ready_projection_lag_max_ms: int = Field(default=10_000, ge=0)
    expiry_scan_interval_s: float = Field(default=5.0, gt=0, le=3600)
    # The writer and projector commit a poll's partitions concurrently, a connection each (6 by
    # default, times two in `serve`), beside the relay and the API's reads.
    db_pool_max_size: int = Field(default=20, ge=2, le=200)
    # How long start-up waits, with backoff, for a Postgres or Kafka that is not ready yet
    # (recovering, not listening, electing a controller) before it fails (platform/startup.py).
    startup_wait_s: float = Field(default=60.0, ge=0, le=3600)
    # The API remembers a verified customer key (hash -> account) this long, in an LRU of at
    # most `api_key_cache_max_keys`: a key revoked elsewhere is refused within this bound (one
    # revoked through this process at once). 0 turns the cache off.
    api_key_cache_ttl_s: float = Field(default=1.0, ge=0, le=1.0)
    api_key_cache_max_keys: int = Field(default=10_000, ge=1, le=1_000_000)
    # HTTP worker processes of `creditledger api`, sharing its listening socket
    # (services/api/workers.py); 1 serves in the process itself, and `serve` always does. More
    # answer more reads on spare cores, but the rate limits are per worker (N times them, and
    # an address blocked for guessing is blocked by one worker only): opt in.
    api_workers: int = Field(default=1, ge=1, le=64)
    # Webhooks (services/webhooks/README.md). Private, loopback and link-local addresses are
    # refused, at registration and at every delivery, unless this is set (tests, local receivers).
    webhooks_allow_private: bool = False
    webhooks_group: str | None = None  # the worker's own consumer group (see below)
    webhook_timeout_s: float = Field(default=10.0, gt=0, le=60)
    # Retries: the first after `webhook_backoff_first_s`, each next `webhook_backoff_factor`
    # times longer (with jitter) up to `webhook_backoff_max_s`, until `webhook_retry_window_s`
    # after the alert (at least a day by default: 5 s, 15 s, 45 s, ... 1 h).
    webhook_backoff_first_s: float = Field(default=5.0, gt=0, le=3600)
    webhook_backoff_factor: float = Field(default=3.0, ge=1, le=10)
    webhook_backoff_max_s: float = Field(default=3600.0, gt=0, le=86_400)
    webhook_retry_window_s: float = Field(default=3 * 86_400.0, gt=0, le=30 * 86_400)
    webhook_queue_max: int = Field(default=1000, ge=1, le=100_000)  # in memory, per endpoint
    webhook_poll_interval_s: float = Field(default=1.0, gt=0, le=60)  # due retries, new endpoints
    # A dashboard sign-in link (POST /v1/admin/accounts/{id}/dashboard-sessions) and the key it
    # is traded for work this long from the link's creation; then the key answers 401.
    dashboard_session_ttl_s: float = Field(default=900.0, gt=0, le=86_400)
    # The origin the links point at (e.g. https://credits.example.com); unset: the request's own.
    public_url: str | None = None

    @property
    def webhooks_consumer_group(self) -> str:
        """`webhooks_group`, else named after the writer's group (`creditledger-writer` ->
        `creditledger-webhooks`), so a namespace that renames that one gets its own."""
        if self.webhooks_group:
            return self.webhooks_group
        base = self.consumer_group.removesuffix("writer")
        return base + "webhooks" if base != self.consumer_group else base + "-webhooks"

    # Operations (docs/operations.md). Kafka security, passed to every client by
    # services/platform/kafka.py `client_kwargs`: SSL and SASL_SSL verify the broker against
    # `kafka_ssl_cafile` (the system's CAs when unset); a client certificate is sent when
    # `kafka_ssl_certfile` (and its `kafka_ssl_keyfile`) are set; SASL_* need a username and
    # password.
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = "PLAIN"
    kafka_sasl_username: str | None = None
    kafka_sasl_password: SecretStr | None = None
    kafka_ssl_cafile: str | None = None
    kafka_ssl_certfile: str | None = None
    kafka_ssl_keyfile: str | None = None
    # Topics the processes create (ensure_topics). 1 suits the one-broker local stack; production
    # runs 3 (with min.insync.replicas 2: acks=all then survives one broker down). Unset
    # `topic_min_insync_replicas` means min(2, replication factor - 1), at least 1.
    topic_replication_factor: int = Field(default=1, ge=1, le=32)
    topic_min_insync_replicas: int | None = Field(default=None, ge=1, le=32)
    # retention.ms of every contract topic; -1 keeps the log forever: the input topics and the
    # ledger topic are the source of replay, reprice and rebuilds (services/history/coverage.py
    # refuses answers over a log that lost records). `/readyz` names a replay topic whose
    # retention is shorter than this.
    topic_retention_ms: int = Field(default=-1, ge=-1)
    # Logs (services/platform/logs.py): "json" (one object a line) or "console" (for people);
    # unset: json, or console when stderr is a terminal. `access_log`: a line per HTTP request.
    log_format: Literal["json", "console"] | None = None
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "INFO"
    access_log: bool = True

    @field_validator("log_level", mode="before")
    @classmethod
    def _level_in_capitals(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @property
    def input_topics(self) -> tuple[str, str]:
        return (self.usage_topic, self.commands_topic)

    def with_endpoints(self, kafka_bootstrap: str, database_url: str) -> Settings:
        return self.model_copy(
            update={"kafka_bootstrap": kafka_bootstrap, "database_url": database_url}
        )


def dead_letter_topic(input_topic: str) -> str:
    return f"{input_topic}.DLT"
