"""The webhook worker's Prometheus metrics, rendered by `GET /metrics` of its process."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

from services.platform.metrics import REGISTRY  # the process's (no _created series)

ATTEMPTS = Counter(
    "creditledger_webhook_attempts",
    "Webhook tries, by outcome: delivered (2xx), failed (another status), error (no answer)",
    ("outcome",),
    registry=REGISTRY,
)
FINISHED = Counter(
    "creditledger_webhook_deliveries_finished",
    "Deliveries that reached a final state: delivered, failed (retry window over), cancelled",
    ("state",),
    registry=REGISTRY,
)
QUEUED_LATER = Counter(
    "creditledger_webhook_queue_full",
    "Deliveries left pending in Postgres because their endpoint's in-memory queue was full",
    registry=REGISTRY,
)
BAD_ALERTS = Counter(
    "creditledger_webhook_bad_alerts",
    "Records on the alerts topic that are not alert messages (skipped, logged)",
    registry=REGISTRY,
)
LATENCY = Histogram(
    "creditledger_webhook_latency_seconds",
    "Time from a try's start to its answer (or its failure)",
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
    registry=REGISTRY,
)
