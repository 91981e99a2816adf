"""When the next try of a delivery is due: exponential backoff with jitter, bounded by a cap,
until the retry window after the alert has passed."""

from __future__ import annotations

import random

from services.platform.settings import Settings

JITTER = 0.2  # each delay is drawn within ±20 % of the nominal one, so retries spread out


def retry_delay_s(tries: int, settings: Settings, rng: random.Random) -> float:
    """The wait after the `tries`-th failed try (1-based): first, first × factor, … up to max."""
    nominal = settings.webhook_backoff_first_s * settings.webhook_backoff_factor ** (tries - 1)
    capped = min(nominal, settings.webhook_backoff_max_s)
    return capped * rng.uniform(1 - JITTER, 1 + JITTER)


def gives_up(age_s: float, delay_s: float, settings: Settings) -> bool:
    """No next try once it would fall beyond `webhook_retry_window_s` after the alert (`age_s`
    counts from the alert's occurred_at, not from when the delivery was recorded)."""
    return age_s + delay_s > settings.webhook_retry_window_s
