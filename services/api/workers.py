"""`creditledger api` with `api_workers` > 1: HTTP worker processes sharing one listening socket.

One Python process serves HTTP on one core; the API's reads are mostly Python (HTTP, the
check's arithmetic), so on a machine with cores to spare N processes answer up to N times as
many. The process that runs `creditledger api` migrates, checks the topics, binds the address
and then only supervises: it starts `api_workers` interpreters (`python -m
services.api.workers`), each with the listening socket (inherited, so port 0 works too), its
own pool (no reset, like the in-process API's) and its own Kafka producer (admin commands), and
serves nothing itself.

- Stopping: SIGTERM/SIGINT to the supervisor stops the workers (SIGTERM, a graceful uvicorn
  shutdown, then SIGKILL after `STOP_DEADLINE_S`). The workers run in a session of their own, so
  a terminal's Ctrl-C reaches the supervisor only; a supervisor that dies (even by SIGKILL)
  takes them with it (Linux: PR_SET_PDEATHSIG, at once; elsewhere a poll, within a second), so
  an API restarted on the same port finds it free.
- A worker that exits on its own is a component that failed: the supervisor stops the others
  and fails, as `creditledger api` does when its API cannot serve.
- `/metrics` from any worker counts every worker's requests: the workers run prometheus_client
  in multiprocess mode (`PROMETHEUS_MULTIPROC_DIR`, a directory of the supervisor's made at
  start and removed at stop; see `metrics.render`). The scrape-time gauges come from Postgres.
- Per worker, as per process before: rate limits (a caller gets up to N times the limit) and the
  key cache (a key revoked through one worker is refused by the others within
  `api_key_cache_ttl_s`).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import shutil
import signal
import socket
import sys
import tempfile
from collections.abc import Iterator

import asyncpg
import uvicorn
from pydantic import SecretStr

from services.api.http_protocol import OneWriteHttpToolsProtocol
from services.platform.gc_policy import apply_gc_policy
from services.platform.logs import configure_logging
from services.platform.settings import Settings

log = logging.getLogger("creditledger.api.workers")
SOCKET_FD_ENV = "CREDITLEDGER_API_WORKER_FD"
PARENT_PID_ENV = "CREDITLEDGER_API_WORKER_PARENT"
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
STOP_DEADLINE_S = 10.0
PARENT_CHECK_S = 1.0
BACKLOG = 2048
PR_SET_PDEATHSIG = 1  # linux/prctl.h


def listening_socket(host: str, port: int) -> socket.socket:
    """Bound and listening (as uvicorn binds), inheritable by the workers."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(BACKLOG)
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


def settings_env(settings: Settings) -> dict[str, str]:
    """The settings as the CREDITLEDGER_* variables a worker reads them from (URLs and the
    admin token included: the supervisor may have resolved them from the local stack)."""
    return {
        # A secret (the SASL password) as itself, not pydantic's "**********".
        f"CREDITLEDGER_{name.upper()}": (
            value.get_secret_value() if isinstance(value, SecretStr) else str(value)
        )
        for name, value in settings.model_dump().items()
        if value is not None
    }


async def serve_workers(settings: Settings, stop: asyncio.Event) -> None:
    """Run `settings.api_workers` HTTP workers until `stop`; raise if one exits on its own."""
    try:
        sock = listening_socket(settings.api_host, settings.api_port)
    except OSError as error:
        raise RuntimeError(
            f"the API could not serve on {settings.api_host}:{settings.api_port}: {error}"
        ) from error
    with sock, _metrics_dir() as metrics_dir:
        env = {
            **os.environ,
            **settings_env(settings),
            MULTIPROC_ENV: metrics_dir,
            SOCKET_FD_ENV: str(sock.fileno()),
            PARENT_PID_ENV: str(os.getpid()),
        }
        workers: list[asyncio.subprocess.Process] = []
        command = (sys.executable, "-m", "services.api.workers")
        try:
            for _ in range(settings.api_workers):
                worker = await asyncio.create_subprocess_exec(
                    *command, pass_fds=(sock.fileno(),), env=env, start_new_session=True,
                    stdin=asyncio.subprocess.DEVNULL,
                )  # fmt: skip
                workers.append(worker)
            log.info("API: %d HTTP workers on %s:%d", len(workers), *sock.getsockname()[:2])
            await _until_stop_or_exit(stop, workers)
        finally:
            await _stop(workers)


@contextlib.contextmanager
def _metrics_dir() -> Iterator[str]:
    path = tempfile.mkdtemp(prefix="creditledger-metrics-")
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


async def _until_stop_or_exit(
    stop: asyncio.Event, workers: list[asyncio.subprocess.Process]
) -> None:
    stopper = asyncio.create_task(stop.wait())
    exits = [asyncio.create_task(worker.wait()) for worker in workers]
    try:
        await asyncio.wait([stopper, *exits], return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (stopper, *exits):
            task.cancel()
    if not stop.is_set():
        codes = [worker.returncode for worker in workers if worker.returncode is not None]
        raise RuntimeError(f"an API worker exited (code {codes[0] if codes else '?'})")


async def _stop(workers: list[asyncio.subprocess.Process]) -> None:
    running = [worker for worker in workers if worker.returncode is None]
    for worker in running:
        with contextlib.suppress(ProcessLookupError):
            worker.send_signal(signal.SIGTERM)
    for worker in running:
        try:
            await asyncio.wait_for(worker.wait(), STOP_DEADLINE_S)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                worker.kill()
            await worker.wait()


# --- in a worker -----------------------------------------------------------------------------


async def _worker(settings: Settings, fd: int, parent: int) -> None:
    # Imported here: prometheus_client must see PROMETHEUS_MULTIPROC_DIR before its first import
    # (it is in this process's environment from its start, and this module imports none of it).
    from services.api.app import create_app, freeze_startup_heap
    from services.api.pool import create_api_pool
    from services.platform.kafka import start_producer
    from services.platform.startup import POSTGRES_NOT_READY, wait_until_ready

    assert settings.database_url is not None and settings.kafka_bootstrap is not None

    async def connect() -> asyncpg.Pool:
        return await create_api_pool(settings)

    pool = await wait_until_ready(
        connect, "Postgres (pool)", POSTGRES_NOT_READY, settings.startup_wait_s
    )
    try:
        producer = await start_producer(settings, settings.startup_wait_s)
        try:
            server = uvicorn.Server(http_config(create_app(settings, pool, producer), settings))
            freeze_startup_heap()
            watch = asyncio.create_task(_watch_parent(server, parent))
            try:
                await server.serve(sockets=[socket.socket(fileno=fd)])
            finally:
                watch.cancel()
        finally:
            await producer.stop()
    finally:
        await pool.close()


def http_config(app: object, settings: Settings) -> uvicorn.Config:
    """uvicorn as every API process runs it: in `serve` (services/runtime.py) and in each
    worker of `creditledger api`."""
    return uvicorn.Config(
        app,  # type: ignore[arg-type]
        # uvicorn's httptools protocol, a response's head and body in one socket write.
        http=OneWriteHttpToolsProtocol,
        host=settings.api_host,
        port=settings.api_port,
        log_level="warning",
        log_config=None,  # uvicorn's records go through services/platform/logs.py
        access_log=False,  # the API's middleware writes the access log (with the request id)
        lifespan="off",
        # The client address is the socket's: uvicorn would otherwise take X-Forwarded-For from
        # local peers as given, and a forged one per request would escape the per-address limit
        # on failed authentications (services/api/ratelimit.py).
        proxy_headers=False,
        server_header=False,  # no `server: uvicorn`: the stack is nobody's business
    )


async def _watch_parent(server: uvicorn.Server, parent: int) -> None:
    """Polled: nothing signals a parent's death to a child that asked for no signal."""
    while os.getppid() == parent:  # noqa: ASYNC110
        await asyncio.sleep(PARENT_CHECK_S)
    server.should_exit = True


def _die_with_parent(parent: int) -> None:
    """Linux: SIGKILL when the supervisor dies (even by SIGKILL), so no worker outlives it
    holding the port; elsewhere `_watch_parent` notices within a second."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # it died before prctl took effect
        raise SystemExit(0)


def main() -> None:
    fd, parent = int(os.environ[SOCKET_FD_ENV]), int(os.environ[PARENT_PID_ENV])
    _die_with_parent(parent)
    settings = Settings()
    configure_logging(settings)
    apply_gc_policy(settings)
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency
        asyncio.run(_worker(settings, fd, parent))
        return
    uvloop.run(_worker(settings, fd, parent))


if __name__ == "__main__":
    main()
