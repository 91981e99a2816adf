"""All traffic and net credits (`endpoint_usage`), aggregated in SQL by endpoint, day or month.

Latency figures come from events that carried `latency_ms`: null when none did.
"""

from __future__ import annotations

from typing import Any

import asyncpg

MAX_ROWS = 1000
_FIGURES = """sum(requests)::bigint AS requests, sum(successful)::bigint AS successful,
       sum(failed)::bigint AS failed, sum(credits)::bigint AS credits,
       sum(latency_ms_total)::bigint AS latency_total,
       sum(latency_samples)::bigint AS latency_samples, max(latency_ms_max) AS latency_max"""
# $1 account, $2 first day (incl.), $3 stop day (excl.), $4 row limit
USAGE_BY_ENDPOINT = f"""
SELECT endpoint AS key, {_FIGURES}
FROM endpoint_usage WHERE account_id = $1 AND day >= $2 AND day < $3
GROUP BY endpoint ORDER BY endpoint LIMIT $4
"""  # noqa: S608 - constant column list, no input
USAGE_BY_DAY = f"""
SELECT to_char(day, 'YYYY-MM-DD') AS key, {_FIGURES}
FROM endpoint_usage WHERE account_id = $1 AND day >= $2 AND day < $3
GROUP BY day ORDER BY day LIMIT $4
"""  # noqa: S608 - constant column list, no input
USAGE_BY_MONTH = f"""
SELECT to_char(date_trunc('month', day), 'YYYY-MM') AS key, {_FIGURES}
FROM endpoint_usage WHERE account_id = $1 AND day >= $2 AND day < $3
GROUP BY 1 ORDER BY 1 LIMIT $4
"""  # noqa: S608 - constant column list, no input
USAGE_SQL = {"endpoint": USAGE_BY_ENDPOINT, "day": USAGE_BY_DAY, "month": USAGE_BY_MONTH}

# The account summary: the period's figures and the lifetime request count, in one pass.
# $1 account, $2 period's first day (incl.), $3 its stop day (excl.)
PERIOD_AND_LIFETIME = """
SELECT coalesce(sum(requests) FILTER (WHERE day >= $2 AND day < $3), 0)::bigint AS requests,
       coalesce(sum(successful) FILTER (WHERE day >= $2 AND day < $3), 0)::bigint AS successful,
       coalesce(sum(failed) FILTER (WHERE day >= $2 AND day < $3), 0)::bigint AS failed,
       coalesce(sum(credits) FILTER (WHERE day >= $2 AND day < $3), 0)::bigint AS credits,
       coalesce(sum(requests), 0)::bigint AS lifetime_requests
FROM endpoint_usage WHERE account_id = $1
"""
REQUESTS_BY_ENDPOINT = """
SELECT endpoint, sum(requests)::bigint AS requests
FROM endpoint_usage WHERE account_id = $1 AND day >= $2 AND day < $3
GROUP BY endpoint ORDER BY endpoint LIMIT $4
"""
ACCOUNT = "SELECT name, created_at FROM accounts WHERE account_id = $1"


def usage_row(row: asyncpg.Record) -> dict[str, Any]:
    samples = row["latency_samples"]
    return {
        "key": row["key"],
        "requests": row["requests"],
        "successfulRequests": row["successful"],
        "failedRequests": row["failed"],
        "credits": row["credits"],
        "latencyMsAvg": round(row["latency_total"] / samples, 1) if samples else None,
        "latencyMsMax": row["latency_max"] if samples else None,
    }
