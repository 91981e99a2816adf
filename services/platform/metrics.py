"""The process's Prometheus registry, shared by every component a process runs.

`REGISTRY` holds the counters each component defines (the writer's in services/writer/metrics.py,
the consumers' in services/platform/offsets.py) and the process's own figures (`process_*`: CPU,
memory, open files, start time; `python_*`: the interpreter and its garbage collector), as the
default registry of prometheus_client would. `GET /metrics` (services/api/metrics.py) renders it
after the app's HTTP metrics: `creditledger serve` runs writer, projector and API in one
process; `creditledger writer` and `projector` serve the same `/metrics` from their ops app.

No `_created` series: every module defining a metric imports this one first, and the series
only doubled the output with a timestamp nobody graphs. Here and not in a component: the API
and the projections never import the writer.
"""

from __future__ import annotations

from prometheus_client import (
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
    disable_created_metrics,
)
from prometheus_client.registry import Collector

disable_created_metrics()  # type: ignore[no-untyped-call]

# The process's own figures, as prometheus_client's default registry has them.
PROCESS_COLLECTORS: tuple[Collector, ...] = (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR)

REGISTRY = CollectorRegistry(auto_describe=True)
for _collector in PROCESS_COLLECTORS:
    REGISTRY.register(_collector)
