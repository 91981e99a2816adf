"""Endpoint usage credits folded from ledger entries read back (the writer owns the live row)."""
