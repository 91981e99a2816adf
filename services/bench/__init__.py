"""`creditledger bench`: throughput and freshness of the real pipeline, measured side by side with
the machine's own limits (kcat, psql \\copy, pgbench, a plain GROUP BY) in one run (issue 6)."""

from services.bench.run import run_bench

__all__ = ["run_bench"]
