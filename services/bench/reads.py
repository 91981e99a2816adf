"""Read load against an API path, two ways:

- capacity: `wrk` (C, closed loop, `concurrency` connections, the customers' keys taken in
  turn), an httpx loop where wrk is not installed. Each connection sends its next request when
  the last is answered, so the run saturates the machine, and its p99 is the tail of a
  saturated machine;
- latency at a rate: `oha` (Rust, open loop, one customer's key), which sends at a fixed rate
  whatever the answers do, so its p99 is the latency a caller sees at that rate (coordinated
  omission: a closed loop waits out a slow answer before sending, and so under-samples exactly
  the slow moments).
  vegeta (Go) was tried first: at 5,000/s it took 0.55–0.66 of this machine's 2 cores itself,
  oha 0.18–0.22, wrk 0.20 at 6,400–7,600/s.
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

from services.bench.workload import ENDPOINT, account_id
from services.platform.settings import Settings

BALANCE_PATH = "/v1/credits/balance"
LEDGER_PATH = "/v1/credits/ledger?limit=100"  # the first page, newest first (the default size)
# What a service asks before a call: may this account spend 1 credit on the bench's endpoint?
CHECK_PATH = f"/v1/credits/check?cost=1&endpoint={quote(ENDPOINT, safe='')}"
DECLINED = 402  # /check's "no": an answer, not an error
WRK_SCRIPT = """
keys = {%s}
counter = 0
request = function()
  counter = counter + 1
  return wrk.format("GET", "%s", {["Authorization"] = "Bearer " .. keys[counter %% #keys + 1]})
end
"""
# Appended for /check: wrk counts every status ≥ 400 as an error, so the threads count the 402s
# and `done` prints their sum for parse_wrk to take back out of the errors.
WRK_DECLINED_SCRIPT = """
threads = {}
setup = function(thread) table.insert(threads, thread) end
declined = 0
response = function(status, headers, body)
  if status == 402 then declined = declined + 1 end
end
done = function(summary, latency, requests)
  local total = 0
  for _, thread in ipairs(threads) do total = total + thread:get("declined") end
  io.write(string.format("Declined (402): %d\\n", total))
end
"""
UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}
MS_PER_S = 1000.0
CONNECTIONS = 64  # oha's at a rate: 5,000/s at 12 ms each before requests wait for one


@dataclass(frozen=True)
class Reads:
    requests: int
    errors: int  # neither 200 nor (where counted) a 402; socket errors and timeouts
    per_s: float
    p50_ms: float
    p99_ms: float
    tool: str
    declined: int = 0  # 402s, where the path may answer one (they count as good answers)
    offered_per_s: float | None = None  # an open loop's sending rate, as it managed it


def percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def customer_keys(http: httpx.AsyncClient, settings: Settings, count: int) -> list[str]:
    """Accounts' API keys (acct 0 … count-1), made through the admin API."""
    admin = {"Authorization": f"Bearer {settings.admin_token}"}
    secrets: list[str] = []
    for n in range(count):
        account = account_id(n)
        created = await http.post(
            "/v1/admin/accounts", json={"account_id": account, "name": account}, headers=admin
        )
        if created.status_code not in (200, 201, 409):
            raise RuntimeError(f"creating {account}: {created.status_code} {created.text}")
        key = await http.post(f"/v1/admin/accounts/{account}/keys", headers=admin)
        if key.status_code != 201:
            raise RuntimeError(f"key for {account}: {key.status_code} {key.text}")
        secrets.append(key.json()["secret"])
    return secrets


async def read_load(
    url: str,
    path: str,
    secrets: list[str],
    concurrency: int,
    seconds: int,
    *,
    count_declined: bool = False,
) -> Reads:
    """`count_declined`: a 402 is a valid answer (counted in `declined`), not an error."""
    wrk = shutil.which("wrk")
    if wrk is None:
        return await _httpx_load(url, path, secrets, concurrency, seconds, count_declined)
    with tempfile.TemporaryDirectory(prefix="creditledger-wrk-") as tmp:
        script = Path(tmp) / "reads.lua"
        text = WRK_SCRIPT % (", ".join(f'"{s}"' for s in secrets), path)
        script.write_text(text + (WRK_DECLINED_SCRIPT if count_declined else ""))
        out = await _run(wrk, "-t", "2", "-c", str(concurrency), "-d", f"{seconds}s",
                         "--latency", "--timeout", "10s", "-s", str(script), url,
                         timeout_s=seconds + 60)  # fmt: skip
    return parse_wrk(out.decode())


def parse_wrk(text: str) -> Reads:
    """Requests/s, errors (non-2xx answers but counted 402s, and socket errors), p50 and p99
    from `wrk --latency`."""
    total = re.search(r"(\d+) requests in ([0-9.]+)(\w+)", text)
    per_s = re.search(r"Requests/sec:\s+([0-9.]+)", text)
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    socket_errors = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text
    )
    if total is None or per_s is None:
        raise RuntimeError(f"no figures in wrk's output: {text[-500:]}")
    declined_402 = re.search(r"^Declined \(402\): (\d+)$", text, re.MULTILINE)
    declined = int(declined_402.group(1)) if declined_402 else 0
    errors = (int(non_2xx.group(1)) if non_2xx else 0) - declined
    errors += sum(int(n) for n in socket_errors.groups()) if socket_errors else 0
    requests = int(total.group(1))
    good_share = (requests - errors) / requests if requests else 0.0
    return Reads(
        requests=requests,
        errors=errors,
        per_s=float(per_s.group(1)) * good_share,
        p50_ms=_wrk_percentile(text, "50"),
        p99_ms=_wrk_percentile(text, "99"),
        tool="wrk",
        declined=declined,
    )


def _wrk_percentile(text: str, q: str) -> float:
    found = re.search(rf"^\s+{q}%\s+([0-9.]+)(us|ms|s|m)\s*$", text, re.MULTILINE)
    return float(found.group(1)) * UNITS_MS[found.group(2)] if found else 0.0


def oha_path() -> str | None:
    """oha on PATH, or in the venv's bin where `make test-deps` puts it."""
    return shutil.which("oha") or shutil.which("oha", path=str(Path(sys.executable).parent))


async def rate_load(
    url: str,
    path: str,
    secret: str,
    rate_per_s: int,
    seconds: int,
    *,
    count_declined: bool = False,
) -> Reads | None:
    """`rate_per_s` requests a second for `seconds`, each due on schedule whatever the answers
    do (oha `-q` with `--latency-correction`: a request's latency counts from when it was due,
    so one waiting for a connection counts its wait); None where oha is not installed. One
    customer's key: oha sends one set of headers. `count_declined` as in `read_load`."""
    oha = oha_path()
    if oha is None:
        return None
    # At most CONNECTIONS requests in flight: an API far behind the rate shows as answers short
    # of it and latencies that grow with the queue, not as thousands of sockets.
    report = await _run(oha, "-z", f"{seconds}s", "-q", str(rate_per_s), "--latency-correction",
                        "-c", str(CONNECTIONS), "-w", "--no-tui", "--output-format", "json",
                        "--worker-threads", "1", "-H", f"Authorization: Bearer {secret}",
                        f"{url}{path}", timeout_s=seconds + 60)  # fmt: skip
    return parse_oha(json.loads(report), seconds, count_declined=count_declined)


async def _run(*command: str, timeout_s: float) -> bytes:
    process = await asyncio.create_subprocess_exec(
        *command, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    try:
        out, err = await asyncio.wait_for(process.communicate(), timeout_s)
    except TimeoutError:  # not left running into the next phase, taking its CPU
        process.kill()
        await process.wait()
        raise
    if process.returncode != 0:
        raise RuntimeError(f"{command[0]} failed ({process.returncode}): {err.decode()[-500:]}")
    return out


def parse_oha(report: dict[str, Any], seconds: float, *, count_declined: bool = False) -> Reads:
    """From `oha --output-format json`: latencies in seconds; answers by status in
    `statusCodeDistribution`, requests that got none (timeouts, refusals) in
    `errorDistribution`."""
    codes: dict[str, int] = report.get("statusCodeDistribution") or {}
    unanswered = sum((report.get("errorDistribution") or {}).values())
    requests = sum(codes.values()) + unanswered
    declined = codes.get(str(DECLINED), 0) if count_declined else 0
    good = codes.get("200", 0) + declined
    elapsed_s = float(report["summary"]["total"])  # the run, with its last answers' wait
    percentiles = report["latencyPercentiles"]
    return Reads(
        requests=requests,
        errors=requests - good,
        per_s=good / elapsed_s if elapsed_s else 0.0,
        p50_ms=(percentiles["p50"] or 0.0) * MS_PER_S,
        p99_ms=(percentiles["p99"] or 0.0) * MS_PER_S,
        tool="oha",
        declined=declined,
        offered_per_s=requests / seconds if seconds else 0.0,
    )


async def _httpx_load(
    url: str, path: str, secrets: list[str], concurrency: int, seconds: int, count_declined: bool
) -> Reads:
    latencies: list[float] = []
    errors = declined = 0
    end = time.monotonic() + seconds
    limits = httpx.Limits(max_connections=concurrency)

    async def client(http: httpx.AsyncClient, n: int) -> None:
        nonlocal errors, declined
        headers = {"Authorization": f"Bearer {secrets[n % len(secrets)]}"}
        while time.monotonic() < end:
            started = time.monotonic()
            answer = await http.get(path, headers=headers)
            latencies.append((time.monotonic() - started) * 1000)
            if count_declined and answer.status_code == DECLINED:
                declined += 1
            elif answer.status_code != 200:
                errors += 1

    started = time.monotonic()
    async with httpx.AsyncClient(base_url=url, timeout=30, limits=limits) as http:
        clients = (client(http, n) for n in range(concurrency))
        await asyncio.wait_for(asyncio.gather(*clients), seconds + 60)
    elapsed = time.monotonic() - started
    return Reads(
        requests=len(latencies),
        errors=errors,
        per_s=(len(latencies) - errors) / elapsed,
        p50_ms=statistics.median(latencies) if latencies else 0.0,
        p99_ms=percentile(latencies, 0.99),
        tool="httpx",
        declined=declined,
    )
