"""The balance read model: balance, reserved, available, totals and buckets per account."""
