"""The pure domain core: `decide(state, command) -> entries`, `evolve(state, entry) -> state`.

Standard library only, no I/O, no clocks: every time arrives as an argument, so a replay of the
same commands gives the same ledger. tests/unit/test_core_imports.py enforces the import rule.
"""

from services.core.decide import decide
from services.core.evolve import evolve, evolve_all
from services.core.model import (
    AccountState,
    AdjustBalance,
    Bucket,
    BucketKind,
    Command,
    ConsumeUsage,
    EntryReason,
    GrantCredits,
    LedgerEntry,
)

__all__ = [
    "AccountState",
    "AdjustBalance",
    "Bucket",
    "BucketKind",
    "Command",
    "ConsumeUsage",
    "EntryReason",
    "GrantCredits",
    "LedgerEntry",
    "decide",
    "evolve",
    "evolve_all",
]
