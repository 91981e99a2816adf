"""A ledger gap stops a fold even under `python -O`, which removes every `assert`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# The core's and the balance projection's fold, each given an entry that skips a seq.
PROGRAM = """
from dataclasses import replace
from services.core.errors import LedgerGap
from tests.unit.test_core_decide import after, grant, one_consume
from services.core import evolve
from tests.unit.test_balance_projection import SCENARIO, apply, entry_to_message, fold, ledger

state = after(grant("g", 10))
try:
    evolve(state, replace(one_consume(state), seq=3))
except LedgerGap:
    print("core: LedgerGap")
_, entries = ledger(SCENARIO)
try:
    apply(fold(entries[:2]), entry_to_message(entries[3]))
except LedgerGap:
    print("projection: LedgerGap")
"""


def test_a_gap_is_refused_with_asserts_stripped() -> None:
    done = subprocess.run(
        [sys.executable, "-O", "-c", PROGRAM], cwd=ROOT, capture_output=True, text=True,
        timeout=120, check=False, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n")[:2] == ["core: LedgerGap", "projection: LedgerGap"]


def test_the_program_really_runs_without_asserts() -> None:
    done = subprocess.run(
        [sys.executable, "-O", "-c", "assert False\nprint('stripped')"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.stdout.strip() == "stripped"
