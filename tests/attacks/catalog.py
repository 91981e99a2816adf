"""The attack catalog: every attack on the ledger's HTTP API, runnable against any live API.

Interface (what a chaos runner imports):

    from tests.attacks.catalog import ATTACKS, AttackResult

    for attack in ATTACKS:                       # Attack(name, description, run)
        result = await attack.run(api_base_url, admin_token)
        print(attack.name, result.tried, "held" if result.held else "BROKEN", result.detail)

- `api_base_url`: the API's origin, e.g. "http://127.0.0.1:8080" (the full API: customer,
  admin, ingest routes and /openapi.json).
- `admin_token`: a token with the `admin` scope (CREDITLEDGER_ADMIN_TOKEN). Each attack makes
  its own accounts, keys and admin tokens with it, under fresh random names, so attacks may run
  again and again, in any order, against one API and its data; they never touch other accounts.
- `run` never raises: `AttackResult(tried, held, detail)` says how many hostile requests (or
  events) were sent, whether every expectation held, and what broke (or a summary). A setup step
  that fails (the API down, a command never applied within 60 s) is `held=False` too, with
  "could not run: …" in `detail`.
- An attack takes seconds (the brute force waits out the API's Retry-After; injection waits for
  the writer), `schemathesis` about a minute. Rate limits at their defaults are fine: a 429 an
  attack did not provoke is waited out for exactly its Retry-After.

The pytest files (tests/integration/test_attacks_*.py) run these same functions against an API
served by the real composition root (writer, projector, API on real Kafka and Postgres).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import httpx

from tests.attacks import auth, contract, injection, inputs
from tests.attacks.probe import Api, AttackResult, SetupFailed, Trial

__all__ = ["ATTACKS", "Attack", "AttackResult", "by_name"]
REQUEST_TIMEOUT_S = 30.0
Step = Callable[[Api], Awaitable[str]]


@dataclass(frozen=True)
class Attack:
    name: str
    description: str
    step: Step

    async def run(self, api_base_url: str, admin_token: str) -> AttackResult:
        trial = Trial(self.name)
        started = time.monotonic()
        try:
            async with httpx.AsyncClient(base_url=api_base_url, timeout=REQUEST_TIMEOUT_S) as http:
                summary = await self.step(Api(http, admin_token, trial))
        except SetupFailed as error:
            trial.check(False, f"could not run: {error}")
            summary = ""
        except httpx.HTTPError as error:  # the API went away under the attack
            trial.check(False, f"the API stopped answering: {type(error).__name__} {error}")
            summary = ""
        return trial.result(f"{summary} ({time.monotonic() - started:.1f} s)")


ATTACKS: list[Attack] = [
    Attack("wrong-keys", "malformed, wrong-checksum, revoked, rotated-out and other-scope "
           "credentials on every route; customer keys on admin routes; two different keys in "
           "one request (400); admin tokens on customer reads without credits:read (403) or "
           "without Creditledger-Account (400)", auth.wrong_keys),
    Attack("brute-force", "key and admin-token guessing from one address (forged "
           "X-Forwarded-For) and one key hammering: 429 with an honest Retry-After",
           auth.brute_force),
    Attack("mass-assignment", "admin bodies with privileges, server-set ids, another "
           "account and nested extras", inputs.mass_assignment),
    Attack("huge-inputs", "pages, ranges, ids, bodies (nested, chunked, lying length), "
           "batches and headers past every bound", inputs.huge_inputs),
    Attack("idempotency-misuse", "Idempotency-Key replayed, reused with other bodies and "
           "routes, on another account, in a stampede, malformed", inputs.idempotency_misuse),
    Attack("error-bodies", "errors provoked every way: problem+json, no internals",
           inputs.error_bodies),
    Attack("unknown-parameters", "a query parameter no operation takes on every operation, "
           "misspelt filters, single-valued parameters twice: 400 naming them",
           inputs.unknown_parameters),
    Attack("undocumented-routes", "served routes equal the OpenAPI document: documented "
           "statuses, 405 with Allow, 404 beyond", inputs.routes_match_the_document),
    Attack("injection", "SQL, COPY, HTML/JS, CSV formulas, control and bidi characters, NUL "
           "and overlong ids in every free-text field of events and commands",
           injection.injection),
    Attack("schemathesis", "schemathesis --checks all (every phase) over the whole OpenAPI "
           "document, as a customer and as admin", contract.schemathesis_all_checks),
    Attack("bola", "account B walks every customer route with account A's ids, cursors and "
           "smuggled account ids; A's key through B's admin paths", auth.bola),
]  # fmt: skip


def by_name(name: str) -> Attack:
    return next(attack for attack in ATTACKS if attack.name == name)
