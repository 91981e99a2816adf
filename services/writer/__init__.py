"""The ledger writer: Kafka input records in, ledger entries appended exactly once."""
