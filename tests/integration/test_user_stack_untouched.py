"""The tests never touch what a user runs: `make run` serves `creditledger stack up`'s stack,
and the tests use servers of their own (tests/servers.py), so a test that restarts its broker or
deletes its topics cannot change the user's. Measured end to end (`make run`, then the whole
suite, then the demo's balances, topic ids and /readyz compared) in the issue's closing note."""

from __future__ import annotations

import pytest

from services.platform import stack
from tests.servers import Servers

pytestmark = pytest.mark.integration


def test_the_tests_servers_are_not_the_stack_make_run_serves(servers: Servers) -> None:
    if servers.stack_dir is None:
        pytest.skip("servers came from the environment or Docker: not the local launcher")
    assert servers.stack_dir.resolve() != stack.default_stack_dir().resolve()
    users = stack.running_endpoints(stack.default_stack_dir())
    if users is not None:  # a `make run` is up beside this run: other servers altogether
        assert users.kafka_bootstrap != servers.kafka_bootstrap
        assert users.database_url != servers.database_url
