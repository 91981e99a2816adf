"""Schemathesis with all its checks (`--checks all`, every phase) over the whole OpenAPI
document, against the real API served over a socket by the composition root (writer, projector
and API on real Kafka and Postgres), as a customer and as admin: tests/attacks/contract.py.

test_api_contract.py drives schemathesis in-process, operation by operation, with the checks
that need no transport of their own; this run adds the rest (ignored_auth, use_after_free,
ensure_resource_availability, positive_data_acceptance, missing_required_header,
unsupported_method, allow_header_conformance, object_level_authorization) and the stateful phase.
"""

from __future__ import annotations

import pytest

from tests.attacks.catalog import by_name
from tests.attacks.live import assert_components_alive, live_api
from tests.servers import Servers

pytestmark = pytest.mark.integration


# Two schemathesis runs of up to 240 s each (tests/attacks/contract.py): more than the default
# per-test timeout, which would cut off their own, more telling, deadline.
@pytest.mark.timeout(600)
async def test_schemathesis_with_every_check_finds_nothing(servers: Servers) -> None:
    # Rate limits lifted (see contract.py); `min_seq` answers at once instead of waiting 5 s for
    # a seq that generated values never reach (its wait: test_api_reads.py).
    unbound = {
        "api_rate_limit_burst": 10**6,
        "api_rate_limit_per_s": 1e6,
        "api_read_wait_max_ms": 0,
    }
    async with live_api(servers, **unbound) as api:
        result = await by_name("schemathesis").run(api.base_url, api.admin_token)
        assert result.tried > 0, result.detail
        assert result.held, result.detail
        assert_components_alive(api)
