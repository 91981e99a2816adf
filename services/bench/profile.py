"""Evidence of where time goes: py-spy sampling a component's process (collapsed stacks kept in
a file), summarised as the functions most often on top of the stack; and the machine's facts."""

from __future__ import annotations

import asyncio
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from services.bench import reads

TOP_FRAMES = 8
SAMPLE_RATE_HZ = 50  # low: py-spy shares the machine's two cores with what it measures


class Sampler:
    """`py-spy record` on one process until `stop()`; `summary()` then names the hot frames."""

    def __init__(self, name: str, pid: int, out_dir: Path) -> None:
        self.name, self.pid = name, pid
        self.path = out_dir / f"{name}.collapsed.txt"
        self.process: asyncio.subprocess.Process | None = None
        out_dir.mkdir(parents=True, exist_ok=True)  # before the loop runs anything of ours

    async def start(self) -> None:
        venv_bin = str(Path(sys.executable).parent)
        spy = shutil.which("py-spy") or shutil.which("py-spy", path=venv_bin)
        if spy is None:
            return
        self.process = await asyncio.create_subprocess_exec(
            spy, "record", "--pid", str(self.pid), "--format", "raw", "--rate",
            str(SAMPLE_RATE_HZ), "--nonblocking", "--subprocesses", "--output", str(self.path),
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
        )  # fmt: skip

    async def stop(self) -> None:
        if self.process is None or self.process.returncode is not None:
            return
        self.process.send_signal(signal.SIGINT)  # py-spy writes its file on SIGINT
        try:
            await asyncio.wait_for(self.process.wait(), 30)
        except TimeoutError:
            self.process.kill()
            await self.process.wait()

    def summary(self) -> dict[str, Any]:
        if not self.path.exists():
            return {"note": "no profile (py-spy not installed or not permitted)"}
        return summarise(self.path.read_text())


def summarise(collapsed: str) -> dict[str, Any]:
    """Top frames by own samples, and the share of samples spent under a few known layers."""
    leaves: Counter[str] = Counter()
    layers: Counter[str] = Counter()
    total = 0
    for line in collapsed.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        total += count
        frames = stack.split(";")
        leaves[_short(frames[-1])] += count
        for layer in _layers(frames):
            layers[layer] += count
    if total == 0:
        return {"samples": 0}
    return {
        "samples": total,
        "top_self_pct": {f: round(100 * n / total, 1) for f, n in leaves.most_common(TOP_FRAMES)},
        "under_pct": {k: round(100 * n / total, 1) for k, n in layers.most_common()},
    }


# Where a frame's file lives (py-spy names it relative to its sys.path entry).
LAYERS = {
    "asyncpg": "(asyncpg/", "aiokafka": "(aiokafka/", "pydantic": "(pydantic",
    "json (stdlib)": "(json/", "fastapi/starlette": "(starlette/", "uvicorn": "(uvicorn/",
    "creditledger": "(services/", "projections": "(projections/", "schemas": "(schemas/",
}  # fmt: skip


def _layers(frames: list[str]) -> set[str]:
    return {name for name, mark in LAYERS.items() if any(mark in f for f in frames)}


def _short(frame: str) -> str:
    """`function (path/to/module.py:line)` → `function (module.py)`."""
    found = re.match(r"(.*) \((.*?):\d+\)$", frame)
    if not found:
        return frame
    return f"{found.group(1)} ({Path(found.group(2)).name})"


def machine() -> dict[str, Any]:
    facts: dict[str, Any] = {
        "nproc": os.cpu_count(),
        "kernel": platform.release(),
        "python": platform.python_version(),
    }
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        model = re.search(r"^model name\s*:\s*(.*)$", cpuinfo.read_text(), re.MULTILINE)
        facts["cpu_model"] = model.group(1) if model else None
    meminfo = Path("/proc/meminfo")
    if meminfo.exists():
        total = re.search(r"^MemTotal:\s*(\d+) kB", meminfo.read_text(), re.MULTILINE)
        facts["ram_gib"] = round(int(total.group(1)) / 1024**2, 1) if total else None
    for tool, argv in {"psql": ["psql", "--version"], "kcat": ["kcat", "-V"],
                       "wrk": ["wrk", "--version"]}.items():  # fmt: skip
        facts[tool] = _first_line(argv)
    oha = reads.oha_path()
    facts["oha"] = _first_line([oha, "--version"]) if oha else None
    facts["python_loop_ns"] = python_loop_ns()
    return facts


def python_loop_ns(iterations: int = 2_000_000, tries: int = 3) -> float:
    """Nanoseconds per iteration of a plain Python loop, the best of `tries`: one core's speed
    for the interpreted work, so runs on different days (or machines) can be compared. The
    figures beside it (rows/s, requests/s) scale with it."""
    best = float("inf")
    for _ in range(tries):
        started = time.perf_counter()
        total = 0
        for n in range(iterations):
            total += n
        best = min(best, time.perf_counter() - started)
    return round(best * 1e9 / iterations, 1)


def _first_line(argv: list[str]) -> str | None:
    if shutil.which(argv[0]) is None:
        return None
    done = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False)
    text = (done.stdout or done.stderr).strip()
    return text.splitlines()[0] if text else None
