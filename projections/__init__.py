"""Read models built from the ledger: one folder per model, pure apply functions, one runner."""
