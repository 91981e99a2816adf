"""Schemathesis with every check it has, over the whole OpenAPI document of a live API.

`schemathesis_all_checks` runs the schemathesis CLI (`st run … --checks all`) against the
served `/openapi.json`, once with a customer key and once with the admin token (each sent on
every operation, so each side also meets the other side's routes and must be refused as
documented), through its own HTTP transport: the checks that send requests of their own
(ignored_auth, use_after_free, ensure_resource_availability…) run too, and so do every phase
(examples, coverage, fuzzing, stateful). Bounded: `MAX_EXAMPLES` per operation, deterministic
generation, one worker, and a time limit per run. The API's rate limits must not bind (tests
serve it with them lifted, as test_api_contract.py does): schemathesis sends many requests
without credentials from one address, and a 429 where it expects 401 is reported as a failure.
"""

from __future__ import annotations

import asyncio
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

from tests.attacks.probe import Api, new_customer

MAX_EXAMPLES = 8
RUN_TIMEOUT_S = 240.0
CONFIG = Path(__file__).with_name("schemathesis.toml")  # why 402 and 422 may answer valid data


async def schemathesis_all_checks(api: Api) -> str:
    customer = await new_customer(api, "atk_st")
    base_url = str(api.http.base_url).rstrip("/")
    summaries = []
    for who, token in (("customer", customer.secret), ("admin", api.admin_token)):
        summaries.append(await _run(api, base_url, who, token))
    return "; ".join(summaries)


async def _run(api: Api, base_url: str, who: str, token: str) -> str:
    with tempfile.TemporaryDirectory(prefix="creditledger-st-") as directory:
        report = Path(directory) / "report.ndjson"
        command = [
            sys.executable, "-m", "schemathesis.cli", "--config-file", str(CONFIG),
            "run", f"{base_url}/openapi.json",
            "--checks", "all", "--header", f"Authorization: Bearer {token}",
            "--max-examples", str(MAX_EXAMPLES), "--workers", "1",
            "--generation-deterministic",
            "--phases", "examples,coverage,fuzzing,stateful",
            "--rate-limit", "40/s", "--request-timeout", "30", "--no-color",
            "--report", "ndjson", "--report-ndjson-path", str(report),
        ]  # fmt: skip
        process = await asyncio.create_subprocess_exec(
            *command, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
        )
        try:
            output, _ = await asyncio.wait_for(process.communicate(), RUN_TIMEOUT_S)
        except TimeoutError:
            process.kill()
            await process.wait()
            api.trial.check(False, f"schemathesis as {who}: no result within {RUN_TIMEOUT_S} s")
            return f"{who}: timed out"
        cases = _cases(report)
    api.trial.tried += cases
    text = output.decode(errors="replace").replace(token, "<token>")
    api.trial.check(process.returncode == 0, f"schemathesis as {who} failed:\n{text[-6000:]}")
    return f"{who}: {cases} cases, all checks passed"


def _cases(report: Path) -> int:
    """Test cases schemathesis sent, from its ndjson report (one event per line)."""
    if not report.exists():
        return 0
    total = 0
    for line in report.read_text().splitlines():
        event: dict[str, Any] = json.loads(line)
        total += _count_in(event)
    return total


def _count_in(event: dict[str, Any]) -> int:
    """Interactions recorded in a ScenarioFinished event's recorder, else 0."""
    finished = event.get("ScenarioFinished")
    if not isinstance(finished, dict):
        return 0
    recorder = finished.get("recorder") or {}
    interactions = recorder.get("interactions") or {}
    return len(interactions)
