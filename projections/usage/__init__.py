"""Endpoint usage: per account, endpoint and UTC day."""
