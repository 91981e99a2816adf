"""The chaos matrix: every fault, `rounds` times, each round seeded from (seed, fault, round).

`make chaos` runs it all; `make test` runs a fixed-seed subset (tests/integration/test_chaos.py).
Any failing round prints the command that replays exactly that round.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

from tests.chaos.attacks import attack_table, run_attacks
from tests.chaos.faults import FAULTS, Fault
from tests.chaos.round import RoundReport, run_round
from tests.chaos.world import CHAOS_STACK_DIR, World, private_world

INVARIANTS = ("I1", "I2", "I3", "I4", "I5", "I6", "I7")


def round_seed(seed: int, fault: Fault, round_no: int) -> str:
    return f"{seed}:{fault.name}:{round_no}"


async def run_matrix(
    world: World, faults: Sequence[Fault], seed: int, rounds: int, events: int,
    only_round: int | None = None, keep_failed: bool = False,
) -> list[RoundReport]:  # fmt: skip
    reports = []
    for fault in faults:
        for round_no in range(rounds) if only_round is None else (only_round,):
            started = time.monotonic()
            seeded = round_seed(seed, fault, round_no)
            report = await run_round(world, fault, seeded, events, keep_failed)
            elapsed_s = time.monotonic() - started
            status = "held" if report.held else "FAILED"
            print(f"  {fault.name} #{round_no}: {status} in {elapsed_s:.1f} s", flush=True)
            reports.append(report)
    return reports


def table(reports: list[RoundReport]) -> str:
    header = f"{'fault':<50} {'rounds':>6} {'struck':>6} {'crashes':>7} {'in flight':>9} " + (
        " ".join(f"{i:>3}" for i in INVARIANTS)
    )
    lines = [header, "-" * len(header)]
    for name in dict.fromkeys(r.fault for r in reports):
        mine = [r for r in reports if r.fault == name]
        held = [
            sum(any(v.invariant == i and v.held for v in r.verdicts) for r in mine)
            for i in INVARIANTS
        ]
        cells = " ".join(f"{'ok' if h == len(mine) else f'{h}/{len(mine)}':>3}" for h in held)
        lines.append(
            f"{name:<50} {len(mine):>6} {sum(r.injected for r in mine):>6} "
            f"{sum(r.crashes for r in mine):>7} {max(r.in_flight_max for r in mine):>9} {cells}"
        )
    return "\n".join(lines)


def failures(reports: list[RoundReport]) -> list[str]:
    found = []
    for report in reports:
        broken = [f"{v.invariant}: {v.detail}" for v in report.verdicts if not v.held]
        broken += [f"unexpected exit: {e}" for e in report.unexpected_exits]
        broken += [f"offsets passed over: {line}" for line in report.offsets_passed_over]
        if broken:
            seed, rest = report.seed.split(":", 1)
            fault, round_no = rest.rsplit(":", 1)
            found.append(
                f"{report.fault} (seed {report.seed}):\n    "
                + "\n    ".join(broken)
                + f"\n    replay: python -m tests.chaos --seed {seed} --fault '{fault}'"
                f" --round {round_no}"
            )
    return found


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.chaos", description=__doc__)
    parser.add_argument("--seed", type=int, default=int(time.time()) % 100_000)
    parser.add_argument("--rounds", type=int, default=3, help="rounds per fault")
    parser.add_argument("--events", type=int, default=2000, help="usage events per round")
    parser.add_argument("--fault", action="append", default=[], help="substring of a name")
    parser.add_argument("--attack", action="append", default=[], help="substring of a name")
    parser.add_argument("--attack-rounds", type=int, default=1, help="runs of each attack")
    parser.add_argument("--round", type=int, default=None, help="only this round number")
    parser.add_argument("--json", type=Path, default=None, help="write the reports here")
    parser.add_argument("--keep-failed", action="store_true", help="keep failed rounds' data")
    parser.add_argument("--stack-dir", type=Path, default=CHAOS_STACK_DIR)
    args = parser.parse_args(argv)
    # The clients log every refused connection while a server restarts; the table is the story.
    logging.basicConfig(level=logging.CRITICAL)
    chosen = [f for f in FAULTS if not args.fault or any(s in f.name for s in args.fault)]
    if args.attack and not args.fault:
        chosen = []
    attack_rounds = 0 if args.fault and not args.attack else args.attack_rounds
    print(f"chaos matrix: seed {args.seed}, {len(chosen)} faults x {args.rounds} rounds,"
          f" {args.events} events each", flush=True)  # fmt: skip
    with private_world(args.stack_dir) as world:
        reports = asyncio.run(
            run_matrix(
                world, chosen, args.seed, args.rounds, args.events, args.round, args.keep_failed
            )
        )
        attacked = asyncio.run(run_attacks(world, attack_rounds, args.attack))
    if reports:
        print(table(reports))
    if attacked:
        print()
        print(attack_table(attacked))
    if args.json is not None:
        figures = {"seed": args.seed, "faults": [asdict(r) for r in reports],
                   "attacks": [asdict(a) for a in attacked]}  # fmt: skip
        args.json.write_text(json.dumps(figures, indent=2, default=str))
    broken = failures(reports)
    for failure in broken:
        print("FAILED " + failure, file=sys.stderr)
    broken_attacks = [a for a in attacked if a.held < a.runs]
    for attack in broken_attacks:
        print(f"BROKEN {attack.attack}: {attack.details}", file=sys.stderr)
    print(f"{len(reports) - len(broken)} of {len(reports)} rounds held every invariant"
          f" (seed {args.seed}); {len(attacked) - len(broken_attacks)} of {len(attacked)}"
          " attacks held")  # fmt: skip
    return 1 if broken or broken_attacks else 0
