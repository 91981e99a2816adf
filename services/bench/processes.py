"""The components as separate processes (`creditledger writer|projector|api`), each with its own
HTTP port, so memory and CPU are measured per process from /proc."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import httpx

from services.platform.settings import Settings

START_DEADLINE_S = 90.0
STOP_DEADLINE_S = 20.0
TICKS_PER_S = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def settings_env(settings: Settings) -> dict[str, str]:
    """The settings as the CREDITLEDGER_* variables a child process reads them from."""
    return {
        f"CREDITLEDGER_{name.upper()}": str(value)
        for name, value in settings.model_dump().items()
        if value is not None
    }


@dataclass
class Component:
    name: str
    process: asyncio.subprocess.Process
    url: str
    log: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def check_alive(self) -> None:
        if self.process.returncode is not None:
            tail = self.log.read_text(errors="replace")[-2000:]
            raise RuntimeError(f"{self.name} exited ({self.process.returncode}):\n{tail}")


async def start(settings: Settings, names: Iterable[str], log_dir: Path) -> dict[str, Component]:
    """Starts each component in its own process and waits until each answers /healthz."""
    started: dict[str, Component] = {}
    try:
        for name in names:
            port = free_port()
            env = {**os.environ, **settings_env(settings), "CREDITLEDGER_API_PORT": str(port)}
            log = log_dir / f"{name}.log"
            with log.open("ab") as out:  # a restarted component keeps its earlier log
                process = await asyncio.create_subprocess_exec(
                    sys.executable, "-m", "services.cli", name,
                    stdout=out, stderr=asyncio.subprocess.STDOUT, stdin=asyncio.subprocess.DEVNULL,
                    env=env,
                )  # fmt: skip
            started[name] = Component(name, process, f"http://{settings.api_host}:{port}", log)
        async with httpx.AsyncClient(timeout=2) as http:
            for component in started.values():
                await _wait_healthy(http, component)
    except BaseException:
        await stop(started.values())
        raise
    return started


async def _wait_healthy(http: httpx.AsyncClient, component: Component) -> None:
    deadline = time.monotonic() + START_DEADLINE_S
    while True:
        component.check_alive()
        try:
            if (await http.get(component.url + "/healthz")).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"{component.name} did not answer /healthz; see {component.log}")
        await asyncio.sleep(0.2)


async def stop(components: Iterable[Component]) -> None:
    """SIGTERM each (a graceful stop), then SIGKILL what is left after the deadline."""
    running = [c for c in components if c.process.returncode is None]
    for component in running:
        component.process.send_signal(signal.SIGTERM)
    for component in running:
        try:
            await asyncio.wait_for(component.process.wait(), STOP_DEADLINE_S)
        except TimeoutError:
            component.process.kill()
            await component.process.wait()


def memory_kb(pid: int) -> tuple[int, int]:
    """(VmRSS, VmHWM) in kB: resident memory now, and its peak."""
    fields = dict(
        line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
    )
    return int(fields["VmRSS"].split()[0]), int(fields["VmHWM"].split()[0])


def _stat(pid: int) -> tuple[str, int, float]:
    """(command name, parent pid, CPU seconds) from /proc/<pid>/stat: user + system time of the
    process and of its children that ended and were waited for. Without the latter a Postgres
    backend that exits during a phase would take its time out of the sum (the postmaster
    gains it), and the bench's own figure would leave out wrk, pgbench and kcat."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    name = stat[stat.index("(") + 1 : stat.rindex(")")]
    fields = stat.rsplit(")", 1)[1].split()
    ticks = sum(int(fields[k]) for k in (11, 12, 13, 14))  # utime, stime, cutime, cstime
    return name, int(fields[1]), ticks / TICKS_PER_S


def _all_stats() -> dict[int, tuple[str, int, float]]:
    stats: dict[int, tuple[str, int, float]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stats[int(entry.name)] = _stat(int(entry.name))
            except (FileNotFoundError, ProcessLookupError, PermissionError, ValueError):
                continue  # it ended while we looked
    return stats


def _tree_seconds(pid: int, stats: dict[int, tuple[str, int, float]]) -> float:
    """CPU seconds of `pid` and its live descendants (an API with `api_workers` > 1 serves from
    child processes)."""
    children: dict[int, list[int]] = {}
    for child, (_, parent, _) in stats.items():
        children.setdefault(parent, []).append(child)
    total, stack, seen = 0.0, [pid], set()
    while stack:  # bounded: each pid is visited once
        current = stack.pop()
        if current in seen or current not in stats:
            continue
        seen.add(current)
        total += stats[current][2]
        stack.extend(children.get(current, ()))
    return total


def machine_busy_seconds() -> float:
    """CPU seconds every core spent busy since boot (/proc/stat): all but idle and iowait.
    Steal counts as busy: time the hypervisor kept is capacity this machine did not have."""
    first = Path("/proc/stat").read_text().split("\n", 1)[0].split()
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(v) for v in first[1:9])
    return (user + nice + system + irq + softirq + steal) / TICKS_PER_S


class CpuMeter:
    """CPU seconds per component (with its child processes), the servers' and the whole
    machine's (`machine`: every core's busy time, the capacity being `os.cpu_count()`) over
    one phase."""

    SERVERS = ("postgres", "java")

    def __init__(self, components: dict[str, Component]) -> None:
        self.components = components
        self.started = time.monotonic()
        self.start = self._now()

    def _now(self) -> dict[str, float]:
        stats = _all_stats()
        now = {name: _tree_seconds(c.pid, stats) for name, c in self.components.items()}
        now["bench"] = stats[os.getpid()][2] if os.getpid() in stats else 0.0
        for server in self.SERVERS:
            now[server] = sum(seconds for comm, _, seconds in stats.values() if comm == server)
        # Every process on the machine, these and the rest (wrk, pgbench, kcat, the kernel).
        now["machine"] = machine_busy_seconds()
        return now

    def cores(self) -> dict[str, float]:
        """Average cores busy per process since the meter started (1.0 = one core)."""
        elapsed = max(time.monotonic() - self.started, 1e-9)
        end = self._now()
        return {name: round((end[name] - self.start[name]) / elapsed, 2) for name in end}
