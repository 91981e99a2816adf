"""Analyst views of the ledger's past: point-in-time balances and streaming exports."""

from services.history.as_of import AsOfBalance, BucketKindBalance, balance_as_of, fold_entries
from services.history.export import export_ledger

__all__ = ["AsOfBalance", "BucketKindBalance", "balance_as_of", "export_ledger", "fold_entries"]
