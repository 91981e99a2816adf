"""Wire contracts: pydantic v2 models for what crosses Kafka and HTTP, plus SQL migrations."""
