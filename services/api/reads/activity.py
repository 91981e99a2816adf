"""Billable activity per UTC day (`activity_days`): net of refunds, days with none omitted."""

from __future__ import annotations

# $1 account, $2 first day (incl.), $3 stop day (excl.)
ACTIVITY_DAYS = """
SELECT day, scans, credits, refunds FROM activity_days
WHERE account_id = $1 AND day >= $2 AND day < $3
ORDER BY day
"""
