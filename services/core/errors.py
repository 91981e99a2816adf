"""Errors of the domain that must survive `python -O` (which strips every `assert`)."""

from __future__ import annotations


class LedgerGap(Exception):
    """An entry does not follow the one before it in its account's ledger: its `seq` skips or
    repeats one, or its `balance_after` disagrees with the balance plus its delta. Folding on
    would give a wrong balance, so whoever folds stops instead (the writer's and projector's
    batch fails and is retried from its committed offsets; a rebuild or audit reports it)."""
