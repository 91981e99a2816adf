"""Unit tests are pure (`make unit`): asking for the real servers here is a mistake, not a wait."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def servers() -> None:
    pytest.fail("tests/unit must not use Kafka or Postgres: move the test to tests/integration")
