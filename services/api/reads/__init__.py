"""Customer reads: SQL (named constants), parameter parsing and freshness, one module per read."""
