"""The writer's own Prometheus metrics, counted in the process that runs the writer.

They live in the process's registry (services/platform/metrics.py `REGISTRY`), which every
process's `GET /metrics` renders.

Counters are counted once the batch that holds their records commits (a batch retried after a
crash counts once) and start from 0 with the process: Prometheus's `rate()`/`increase()` handle
the reset. They replace counting the tables at scrape (`count(*)` over `processed_requests`
grew with every usage event).
"""

from __future__ import annotations

from prometheus_client import Counter, Histogram

from services.platform.metrics import REGISTRY

MISROUTED = Counter(
    "creditledger_misrouted_records",
    "Input records found on another partition than their account's (murmur2 of account_id),"
    " forwarded to it through the outbox; counted once the batch that forwards them commits",
    ("topic",),
    registry=REGISTRY,
)
RECORDS = Counter(
    "creditledger_writer_records",
    "Input records the writer consumed and committed (applied, duplicate, dead-lettered or"
    " forwarded)",
    ("topic",),
    registry=REGISTRY,
)
USAGE_EVENTS = Counter(
    "creditledger_writer_usage_events",
    "Usage events the writer accepted (a new request_id, recorded in processed_requests)",
    registry=REGISTRY,
)
COMMANDS = Counter(
    "creditledger_writer_commands",
    "Commands the writer decided (a new command_id), by status: applied or rejected",
    ("status",),
    registry=REGISTRY,
)
LEDGER_ENTRIES = Counter(
    "creditledger_writer_ledger_entries",
    "Ledger entries the writer appended",
    registry=REGISTRY,
)
DUPLICATES = Counter(
    "creditledger_writer_duplicate_records",
    "Redelivered input records (an id already applied with the same payload): skipped",
    registry=REGISTRY,
)
BATCH_SECONDS = Histogram(
    "creditledger_writer_batch_duration_seconds",
    "Time to apply one partition's batch, from claiming its offsets to its commit",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
    registry=REGISTRY,
)
GAP_REREADS = Counter(
    "creditledger_writer_gap_rereads",
    "Partition batches not applied because their offsets passed over records, read again from"
    " the stored offsets (a consumer position ahead of them heals so; services/writer/gaps.py)",
    registry=REGISTRY,
)
