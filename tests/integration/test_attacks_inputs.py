"""Attacks through request contents (tests/attacks/inputs.py): mass assignment, huge inputs,
Idempotency-Key misuse, provoked errors, routes beyond the OpenAPI document and unknown query
parameters, against the real API served over a socket by the composition root on real Kafka and
Postgres.

The attacks are the catalog's own (`tests/attacks/catalog.py`). Each must have tried something
and held; the writer and projector must still be running after it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.attacks.catalog import by_name
from tests.attacks.live import LiveApi, assert_components_alive, live_api
from tests.servers import Servers

pytestmark = pytest.mark.integration
ATTACKS = ["mass-assignment", "huge-inputs", "idempotency-misuse", "error-bodies",
           "undocumented-routes", "unknown-parameters"]  # fmt: skip


@pytest.fixture(scope="module")
async def api(servers: Servers) -> AsyncIterator[LiveApi]:
    async with live_api(servers) as live:
        yield live


@pytest.mark.parametrize("name", ATTACKS)
async def test_the_attack_is_refused(api: LiveApi, name: str) -> None:
    result = await by_name(name).run(api.base_url, api.admin_token)
    assert result.tried > 0, result.detail
    assert result.held, result.detail
    assert_components_alive(api)
