"""The chaos suite's world: servers it may restart, fresh namespaces, components as processes.

The matrix restarts Kafka and PostgreSQL, so by default it starts a stack of its own
(`.creditledger/chaos-stack`, other ports and data than `creditledger stack up`): a broker restart
there cannot break anybody else's run. Every round gets a fresh namespace (database and topics).
Components run the way a user runs them, `python -m services.cli writer|projector|api`, so
kill -9 is a real kill -9.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg

from services.platform import stack
from services.platform.failpoints import CRASH_EXIT_CODE
from services.platform.kafka import delete_topics, ensure_topics
from services.platform.postgres import migrate
from services.platform.settings import Settings
from tests.servers import Servers, namespace_settings, private_stack

PROJECT_ROOT = Path(__file__).resolve().parents[2]
# `CHAOS_STACK_DIR` moves it (a run of its own next to another chaos run or `make test`).
CHAOS_STACK_DIR = Path(
    os.environ.get("CHAOS_STACK_DIR") or PROJECT_ROOT / ".creditledger" / "chaos-stack"
).resolve()
STOP_TIMEOUT_S = 20.0


@dataclass(frozen=True)
class World:
    servers: Servers
    stack_dir: Path  # the stack the restart faults restart

    def restart_kafka(self) -> None:
        stack.restart_kafka(self.stack_dir)

    def restart_postgres(self) -> None:
        stack.restart_postgres(self.stack_dir)


@contextlib.contextmanager
def private_world(stack_dir: Path = CHAOS_STACK_DIR) -> Iterator[World]:
    """The chaos stack, stopped when done if this run started it."""
    with private_stack(stack_dir) as servers:
        yield World(servers, stack_dir)


async def new_namespace(world: World, **overrides: object) -> Settings:
    settings = namespace_settings(world.servers).model_copy(update=overrides)
    assert settings.database_url is not None
    admin = await asyncpg.connect(world.servers.database_url)
    try:
        await admin.execute(f'CREATE DATABASE "{database_name(settings)}"')
    finally:
        await admin.close()
    await migrate(settings.database_url)
    await ensure_topics(settings)
    return settings


async def drop_namespace(world: World, settings: Settings) -> None:
    await delete_topics(settings)
    admin = await asyncpg.connect(world.servers.database_url)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{database_name(settings)}" WITH (FORCE)')
    finally:
        await admin.close()


def database_name(settings: Settings) -> str:
    assert settings.database_url is not None
    return settings.database_url.rsplit("/", 1)[1]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def settings_env(settings: Settings) -> dict[str, str]:
    """The namespace as `CREDITLEDGER_*` variables, the way an operator configures a process."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("CREDITLEDGER_")}
    for name, value in settings.model_dump().items():
        if value is not None:
            env[f"CREDITLEDGER_{name.upper()}"] = str(value)
    return env


class Component:
    """One `creditledger <name>` process. `failpoints` arms its crash points for this start."""

    def __init__(self, settings: Settings, name: str, *, api_port: int = 0) -> None:
        self.settings, self.name, self.api_port = settings, name, api_port
        self.process: asyncio.subprocess.Process | None = None
        self.crashes = 0  # exits at a failpoint or by our kill -9
        self.starts = 0
        self.stopping = False  # stopped on purpose: the supervisor leaves it alone
        self.stderr_path = (
            Path(os.environ.get("TMPDIR", "/tmp")) / f"chaos-{os.getpid()}-{id(self)}"
        )

    async def start(self, failpoints: str = "") -> None:
        assert self.process is None or self.process.returncode is not None, "already running"
        env = settings_env(self.settings) | {"CREDITLEDGER_FAILPOINTS": failpoints}
        if self.api_port:
            env["CREDITLEDGER_API_PORT"] = str(self.api_port)
        with self.stderr_path.open("ab") as stderr:
            self.process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "services.cli", self.name, env=env, cwd=PROJECT_ROOT,
                stdout=asyncio.subprocess.DEVNULL, stderr=stderr,
            )  # fmt: skip
        self.starts += 1
        self.stopping = False

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.returncode is None

    @property
    def exited_unexpectedly(self) -> bool:
        """Exited, and not at a failpoint: a crash the fault did not ask for."""
        code = None if self.process is None else self.process.returncode
        return code is not None and code != CRASH_EXIT_CODE and code != -signal.SIGKILL

    def kill9(self) -> None:
        if self.running and self.process is not None:
            self.process.kill()

    async def reap(self) -> int | None:
        """The exit code once the process has ended (counting crashes), else None."""
        if self.process is None:
            return None
        if self.process.returncode is None:
            return None
        await self.process.wait()
        return self.process.returncode

    async def stop(self) -> None:
        self.stopping = True
        if not self.running or self.process is None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(self.process.wait(), STOP_TIMEOUT_S)
        except TimeoutError:
            self.process.kill()
            await self.process.wait()

    def stderr_tail(self, max_bytes: int = 3000) -> str:
        try:
            return self.stderr_path.read_bytes()[-max_bytes:].decode(errors="replace")
        except FileNotFoundError:
            return ""

    def log_lines(self) -> list[str]:
        """Every line the process logged, across its restarts (one file, appended to)."""
        try:
            return self.stderr_path.read_text(errors="replace").splitlines()
        except FileNotFoundError:
            return []

    def discard_log(self) -> None:
        self.stderr_path.unlink(missing_ok=True)
