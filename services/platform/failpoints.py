"""Named crash points for fault tests: `CREDITLEDGER_FAILPOINTS=name:n[,name:n]` makes the n-th
pass through `hit(name)` end the process at once (exit 137, like kill -9: no cleanup runs).

Unset (always, outside fault tests) it costs one dict lookup per batch.
"""

from __future__ import annotations

import os
import sys

CRASH_EXIT_CODE = 137


def _parse(spec: str) -> dict[str, int]:
    armed: dict[str, int] = {}
    for item in filter(None, (part.strip() for part in spec.split(","))):
        name, _, count = item.partition(":")
        armed[name] = int(count or "1")
    return armed


_armed = _parse(os.environ.get("CREDITLEDGER_FAILPOINTS", ""))


def hit(name: str) -> None:
    left = _armed.get(name)
    if left is None:
        return
    if left <= 1:
        sys.stderr.write(f"failpoint {name}: crashing\n")
        sys.stderr.flush()
        os._exit(CRASH_EXIT_CODE)
    _armed[name] = left - 1
