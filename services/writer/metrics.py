"""The writer's own Prometheus metrics, counted in the process that runs the writer.

`REGISTRY` is rendered by the API's `GET /metrics` (services/api/metrics.py) after its HTTP
metrics; `creditledger serve` runs writer and API in one process.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter

REGISTRY = CollectorRegistry(auto_describe=True)

MISROUTED = Counter(
    "creditledger_misrouted_records",
    "Input records found on another partition than their account's (murmur2 of account_id),"
    " forwarded to it through the outbox; counted once the batch that forwards them commits",
    ("topic",),
    registry=REGISTRY,
)
