"""The chaos matrix's deterministic subset, run by `make test`: one seeded round per fault, each
checked for I1-I7 against the oracle (`make chaos` runs the whole matrix, more rounds, more load).

It restarts its servers and deletes topics, so it runs on a stack of its own (tests/chaos/world.py:
`.creditledger/chaos-stack`, or `CHAOS_STACK_DIR`), never on the one the other tests share.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator

import pytest

from tests.chaos.faults import BY_NAME, Fault
from tests.chaos.matrix import failures, round_seed
from tests.chaos.round import run_round
from tests.chaos.world import World, private_world

pytestmark = pytest.mark.integration
SEED = 20261123
EVENTS = 400
SUBSET = (
    "writer kill -9 at failpoints",
    "projector kill -9 at failpoints",
    "postgres crash-restart under load",
    "postgres connection killed during COMMIT",
    "duplicate delivery 2-5x, across a restart",
    "same id, changed payload",
    "late (days old), out-of-order and future events",
    "hot account: concurrent grants, holds, consumes",
    "poison messages",
    "dead-letter topic refusing writes",
    "input topic deleted and re-created",
    "misrouted producer (librdkafka partitioner)",
    "poison from the fuzzer",
)


@pytest.fixture(scope="module")
def world() -> Iterator[World]:
    with private_world() as chaos_world:
        yield chaos_world


@pytest.mark.parametrize("fault_name", SUBSET)
# A round may take its settle deadline (240 s, tests/chaos/round.py) after the API's start
# (60 s): above the default per-test timeout, which would cut off the round's own report.
@pytest.mark.timeout(600)
async def test_the_invariants_hold_under(world: World, fault_name: str) -> None:
    fault: Fault = BY_NAME[fault_name]
    report = await run_round(world, fault, round_seed(SEED, fault, 0), EVENTS)
    assert report.injected > 0, f"{fault_name} never struck: the round tested nothing"
    assert report.held, "\n".join(failures([report]))
    assert not report.unexpected_exits, report.unexpected_exits
    assert not report.offsets_passed_over, report.offsets_passed_over
    if report.gap_rereads:  # healed, but a consumer position ran ahead of its stored offsets
        warnings.warn(f"{report.gap_rereads} writer batches read again for a gap", stacklevel=1)
