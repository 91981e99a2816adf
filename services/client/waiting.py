"""Waiting for a command's outcome with a deadline (the clients poll; this keeps the rule)."""

from __future__ import annotations

import time

from services.client import models

SETTLED = ("applied", "rejected")


def settled(status: models.CommandStatus | None) -> bool:
    """Whether a polled status is final (None: the API does not know the command yet)."""
    return status is not None and status.get("status") in SETTLED


class Deadline:
    def __init__(self, timeout_s: float, what: str) -> None:
        self.what, self.timeout_s = what, timeout_s
        self.ends_at = time.monotonic() + timeout_s

    def next_wait_s(self, poll_s: float) -> float:
        """How long to wait before the next poll; TimeoutError once the deadline has passed."""
        left_s = self.ends_at - time.monotonic()
        if left_s <= 0:
            raise TimeoutError(f"waited {self.timeout_s:.1f} s for {self.what}")
        return min(poll_s, left_s)
