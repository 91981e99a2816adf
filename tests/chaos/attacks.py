"""The attack half of the matrix: tests/attacks/catalog.py's attacks against a live API (its
writer, projector and API as real processes on the chaos stack), then a fresh fold of the ledger
(I5) and conservation per account (I3), since attacks publish events and commands too."""

from __future__ import annotations

import time
from dataclasses import dataclass

from services.platform.postgres import create_pool
from services.platform.settings import Settings
from tests.attacks.catalog import ATTACKS
from tests.chaos import invariants, poller
from tests.chaos.world import Component, World, drop_namespace, free_port, new_namespace

API_START_DEADLINE_S = 60.0
SETTLE_DEADLINE_S = 120.0
NEEDS_UNBOUND_LIMITS = {"schemathesis"}
UNBOUND_LIMITS = {"api_rate_limit_burst": 10**6, "api_rate_limit_per_s": 1e6,
                  "api_read_wait_max_ms": 0}  # fmt: skip
LEDGER_NOT_CONSERVED = """
SELECT w.account_id FROM writer_accounts w
LEFT JOIN (SELECT account_id, sum(delta)::bigint AS total FROM ledger_entries GROUP BY 1) l
USING (account_id) LEFT JOIN balance_view b USING (account_id)
WHERE coalesce(l.total, 0) <> w.balance OR w.balance <> coalesce(b.balance, 0)
"""


@dataclass
class AttackReport:
    attack: str
    runs: int = 0
    tried: int = 0
    held: int = 0
    seconds: float = 0.0
    details: list[str] | None = None


async def run_attacks(world: World, rounds: int, only: list[str]) -> list[AttackReport]:
    chosen = [a for a in ATTACKS if not only or any(s in a.name for s in only)]
    if not chosen or rounds == 0:
        return []
    settings = await new_namespace(world)
    port, unbound_port = free_port(), free_port()
    # schemathesis sends thousands of requests, some unauthenticated, from one address: it gets
    # an API of its own whose limits do not bind (tests/attacks/contract.py says why).
    unbound = settings.model_copy(update=UNBOUND_LIMITS)
    components = [Component(settings, "api", api_port=port), Component(settings, "writer"),
                  Component(settings, "projector"),
                  Component(unbound, "api", api_port=unbound_port)]  # fmt: skip
    reports = {a.name: AttackReport(a.name, details=[]) for a in chosen}
    try:
        for component in components:
            await component.start()
        base_url = f"http://127.0.0.1:{port}"
        unbound_url = f"http://127.0.0.1:{unbound_port}"
        await poller.wait_for_api(base_url, API_START_DEADLINE_S)
        await poller.wait_for_api(unbound_url, API_START_DEADLINE_S)
        assert settings.admin_token is not None
        for _ in range(rounds):
            for attack in chosen:
                started = time.monotonic()
                url = unbound_url if attack.name in NEEDS_UNBOUND_LIMITS else base_url
                result = await attack.run(url, settings.admin_token)
                report = reports[attack.name]
                report.runs += 1
                report.tried += result.tried
                report.held += result.held
                report.seconds += time.monotonic() - started
                if not result.held and report.details is not None:
                    report.details.append(result.detail)
                print(f"  attack {attack.name}: {'held' if result.held else 'BROKEN'}", flush=True)
        reports["ledger after the attacks"] = await _ledger_after(settings)
    finally:
        for component in components:
            await component.stop()
            component.discard_log()
        await drop_namespace(world, settings)
    return list(reports.values())


async def _ledger_after(settings: Settings) -> AttackReport:
    assert settings.database_url is not None
    pool = await create_pool(settings.database_url, max_size=2)
    try:
        behind = await invariants.settle(pool, settings, SETTLE_DEADLINE_S)
        unconserved = [r["account_id"] for r in await pool.fetch(LEDGER_NOT_CONSERVED)]
        folded = await invariants.check_projections(pool)
    finally:
        await pool.close()
    problems = [f"did not settle: {behind[:3]}"] if behind else []
    problems += [f"I3 not conserved: {unconserved[:5]}"] if unconserved else []
    problems += [] if folded.held else [f"I5: {folded.detail}"]
    name = "ledger after the attacks (I3, I5)"
    return AttackReport(name, 1, 1, int(not problems), 0.0, problems)


def attack_table(reports: list[AttackReport]) -> str:
    header = f"{'attack':<50} {'runs':>6} {'tried':>7} {'held':>6} {'seconds':>8}"
    lines = [header, "-" * len(header)]
    for r in reports:
        held = "ok" if r.held == r.runs else f"{r.held}/{r.runs}"
        lines.append(f"{r.attack:<50} {r.runs:>6} {r.tried:>7} {held:>6} {r.seconds:>8.1f}")
    return "\n".join(lines)
