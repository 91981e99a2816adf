"""Start a real Kafka 4.1.1 broker and a real PostgreSQL server locally, without Docker.

Kafka runs as one KRaft node (broker and controller combined) from jars that Maven fetches once into
a cache. PostgreSQL runs from the distribution's server binaries; as root it runs as the `postgres`
system user because PostgreSQL refuses to run as root. Both servers are detached from the caller so
they outlive it: one `stack_up` serves many test runs, and `stack_down` ends them.

Standard library only, so the launcher works before any project dependency is installed.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import hashlib
import json
import os
import pwd
import resource
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

__all__ = [
    "StackEndpoints",
    "StackError",
    "default_stack_dir",
    "running_endpoints",
    "stack_down",
    "stack_status",
    "stack_up",
]

KAFKA_VERSION = "4.1.1"
LOG4J_VERSION = "2.24.3"
DEPENDENCY_PLUGIN = "org.apache.maven.plugins:maven-dependency-plugin:3.8.1"
DATABASE_NAME = "creditledger"
LOOPBACK = "127.0.0.1"
POSTGRES_USER = "postgres"

MAVEN_TIMEOUT_S = 600.0
KAFKA_FORMAT_TIMEOUT_S = 120.0
KAFKA_READY_TIMEOUT_S = 120.0
KAFKA_TERM_TIMEOUT_S = 30.0
KAFKA_KILL_TIMEOUT_S = 10.0
PG_START_TIMEOUT_S = 60
PG_STOP_TIMEOUT_S = 60
PG_COMMAND_TIMEOUT_S = 120.0
# The server configured for the ledger's work (the same list is in compose.yaml; a unit test
# holds them equal). Durability is untouched: fsync and synchronous_commit stay on, so a commit
# is on disk before the writer stores its offsets. What changes is how often the server pays for
# checkpoints and full-page images (max_wal_size, checkpoint_timeout, wal_compression) and how
# much of the working set stays in its own cache (shared_buffers; the machine has 24 GiB).
POSTGRES_SETTINGS: dict[str, str] = {
    "max_connections": "200",
    "shared_buffers": "1GB",
    "wal_buffers": "64MB",
    "wal_compression": "lz4",
    "max_wal_size": "4GB",
    "min_wal_size": "512MB",
    "checkpoint_timeout": "15min",
    "checkpoint_completion_target": "0.9",
    "effective_cache_size": "8GB",
    "work_mem": "16MB",
    "random_page_cost": "1.1",
    "synchronous_commit": "on",
    "fsync": "on",
    # Statement statistics for the benchmark's Postgres profile (services/bench/statements.py):
    # a hash table in shared memory and a counter update per statement.
    "shared_preload_libraries": "pg_stat_statements",
}
PSQL_TIMEOUT_S = 30.0
# A waiting caller may sit behind a first run that downloads jars and boots both servers.
LOCK_TIMEOUT_S = MAVEN_TIMEOUT_S + KAFKA_READY_TIMEOUT_S + PG_COMMAND_TIMEOUT_S + 60.0
POLL_INTERVAL_S = 0.2
TCP_PROBE_TIMEOUT_S = 1.0
KAFKA_OPEN_FILES = 1_048_576
LOG_TAIL_LINES = 40
LOG_TAIL_MAX_BYTES = 256 * 1024

KAFKA_STARTED_MARKER = "Kafka Server started"
LIBS_MARKER = ".complete"

# Kafka children started by this process, kept so they can be reaped rather than left as zombies
# (a zombie still answers kill(pid, 0)) and so Popen does not warn about a dropped live child.
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}


class StackError(RuntimeError):
    """The local stack could not be started, stopped or inspected."""


@dataclass(frozen=True)
class StackEndpoints:
    kafka_bootstrap: str
    database_url: str


@dataclass
class _State:
    """What must survive between calls (and processes): persisted as stack_dir/state.json."""

    kafka_port: int | None = None
    controller_port: int | None = None
    postgres_port: int | None = None
    kafka_pid: int | None = None
    pg_root: str | None = None


@dataclass(frozen=True)
class _Paths:
    stack_dir: Path
    lock: Path
    state: Path
    kafka_dir: Path
    kafka_data: Path
    kafka_config: Path
    kafka_log4j: Path
    kafka_log: Path
    kafka_stdout: Path


@dataclass(frozen=True)
class _PgPaths:
    root: Path
    data: Path
    socket_dir: Path
    log: Path


# ---------------------------------------------------------------------------------------------
# Public API
# ---------------------------------------------------------------------------------------------


def default_stack_dir() -> Path:
    configured = os.environ.get("CREDITLEDGER_STACK_DIR")
    if configured:
        return Path(configured).expanduser().resolve()
    project_root = Path(__file__).resolve().parents[2]
    return project_root / ".creditledger" / "stack"


def _no_phase(name: str) -> None:
    """The default `progress`: stack_up's callers outside the CLI show nothing."""


def stack_up(
    stack_dir: Path | None = None, progress: Callable[[str], None] = _no_phase
) -> StackEndpoints:
    """Start whatever is not running yet and return the endpoints; reuse servers that run.
    `progress(name)` is called as each slow step starts (the CLI shows it)."""
    paths = _paths(stack_dir)
    with _exclusive_lock(paths.lock, LOCK_TIMEOUT_S):
        state = _load_state(paths)
        pg = _pg_paths(paths, state)
        state.pg_root = str(pg.root)
        _save_state(paths, state)
        _ensure_kafka(paths, state, progress)
        _ensure_postgres(paths, state, pg, progress)
        endpoints = _endpoints(state)
        if endpoints is None:  # both ensure steps set every port, so this is a bug
            raise StackError("stack started but its ports are not recorded")
        return endpoints


def stack_down(stack_dir: Path | None = None) -> None:
    """Stop both servers; stopping what is already stopped is not an error."""
    paths = _paths(stack_dir)
    with _exclusive_lock(paths.lock, LOCK_TIMEOUT_S):
        state = _load_state(paths)
        _stop_kafka(paths, state)
        if state.pg_root is not None:
            _stop_postgres(_pg_paths(paths, state))


def restart_kafka(stack_dir: Path | None = None) -> StackEndpoints:
    """Stop the broker (controlled shutdown) and start it again on the same port and data: the
    fault the publisher and the writer must ride through without losing or doubling events."""
    paths = _paths(stack_dir)
    with _exclusive_lock(paths.lock, LOCK_TIMEOUT_S):
        state = _load_state(paths)
        _stop_kafka(paths, state)
        _ensure_kafka(paths, state)
        endpoints = _endpoints(state)
        if endpoints is None:
            raise StackError("Kafka restarted but the stack's ports are not recorded")
        return endpoints


def restart_postgres(stack_dir: Path | None = None) -> StackEndpoints:
    """Stop PostgreSQL the way a crash does (`pg_ctl -m immediate`: no checkpoint, every
    connection cut, WAL recovery at start) and start it again on the same port and data."""
    paths = _paths(stack_dir)
    with _exclusive_lock(paths.lock, LOCK_TIMEOUT_S):
        state = _load_state(paths)
        pg = _pg_paths(paths, state)
        _stop_postgres(pg, mode="immediate")
        _ensure_postgres(paths, state, pg)
        endpoints = _endpoints(state)
        if endpoints is None:
            raise StackError("PostgreSQL restarted but the stack's ports are not recorded")
        return endpoints


def stack_status(stack_dir: Path | None = None) -> dict[str, dict[str, object]]:
    # Read-only and lock-free, so status answers even while another caller is starting the stack.
    paths = _paths(stack_dir)
    state = _load_state(paths)
    kafka_pid = state.kafka_pid if _kafka_pid_alive(paths, state.kafka_pid) else None
    pg = _pg_paths(paths, state)
    pg_pid = _postmaster_pid(pg)
    return {
        "kafka": {
            "running": _kafka_running(paths, state),
            "pid": kafka_pid,
            "address": _address(state.kafka_port),
            "log": str(paths.kafka_log),
        },
        "postgres": {
            "running": _postgres_running(state, pg),
            "pid": pg_pid,
            "address": _address(state.postgres_port),
            "log": str(pg.log),
            "data_dir": str(pg.data),
        },
    }


def running_endpoints(stack_dir: Path | None = None) -> StackEndpoints | None:
    paths = _paths(stack_dir)
    state = _load_state(paths)
    if not _kafka_running(paths, state):
        return None
    if not _postgres_running(state, _pg_paths(paths, state)):
        return None
    return _endpoints(state)


# ---------------------------------------------------------------------------------------------
# Paths, state, locking
# ---------------------------------------------------------------------------------------------


def _paths(stack_dir: Path | None) -> _Paths:
    root = (stack_dir if stack_dir is not None else default_stack_dir()).expanduser().resolve()
    kafka_dir = root / "kafka"
    return _Paths(
        stack_dir=root,
        lock=root / "lock",
        state=root / "state.json",
        kafka_dir=kafka_dir,
        kafka_data=kafka_dir / "data",
        kafka_config=kafka_dir / "config" / "server.properties",
        kafka_log4j=kafka_dir / "config" / "log4j2.properties",
        kafka_log=kafka_dir / "logs" / "server.log",
        kafka_stdout=kafka_dir / "logs" / "kafka.out",
    )


def _pg_paths(paths: _Paths, state: _State) -> _PgPaths:
    if state.pg_root is not None:
        root = Path(state.pg_root)
    elif _running_as_root():
        # The postgres user must traverse every parent of its data dir, which a stack dir under
        # /root or a home directory does not allow; /var/tmp is world-traversable and survives
        # reboots. The hash keeps one cluster per stack dir.
        digest = hashlib.sha256(str(paths.stack_dir).encode()).hexdigest()[:12]
        root = Path("/var/tmp") / f"creditledger-{digest}"
    else:
        root = paths.stack_dir / "postgres"
    return _PgPaths(
        root=root, data=root / "data", socket_dir=root / "socket", log=root / "postgres.log"
    )


def _load_state(paths: _Paths) -> _State:
    try:
        raw: object = json.loads(paths.state.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return _State()
    except (OSError, ValueError) as exc:
        raise StackError(f"cannot read {paths.state}: {exc}") from exc
    if not isinstance(raw, dict):
        raise StackError(f"{paths.state} does not hold a JSON object")
    pg_root = raw.get("pg_root")
    return _State(
        kafka_port=_int_or_none(raw.get("kafka_port")),
        controller_port=_int_or_none(raw.get("controller_port")),
        postgres_port=_int_or_none(raw.get("postgres_port")),
        kafka_pid=_int_or_none(raw.get("kafka_pid")),
        pg_root=pg_root if isinstance(pg_root, str) else None,
    )


def _int_or_none(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _save_state(paths: _Paths, state: _State) -> None:
    # Write-then-rename so lock-free readers (stack_status) never see a half-written file.
    paths.stack_dir.mkdir(parents=True, exist_ok=True)
    tmp = paths.state.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(asdict(state), indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, paths.state)


@contextlib.contextmanager
def _exclusive_lock(lock_path: Path, timeout_s: float) -> Iterator[None]:
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    # Python opens files non-inheritable, so the servers started under the lock do not keep it.
    with open(lock_path, "a+b") as handle:
        deadline_s = time.monotonic() + timeout_s
        while True:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline_s:
                    raise StackError(
                        f"timed out after {timeout_s:.0f} s waiting for {lock_path}"
                    ) from None
                time.sleep(POLL_INTERVAL_S)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _endpoints(state: _State) -> StackEndpoints | None:
    if state.kafka_port is None or state.postgres_port is None:
        return None
    return StackEndpoints(
        kafka_bootstrap=f"{LOOPBACK}:{state.kafka_port}",
        database_url=f"postgresql://{POSTGRES_USER}@{LOOPBACK}:{state.postgres_port}/{DATABASE_NAME}",
    )


def _address(port: int | None) -> str | None:
    return f"{LOOPBACK}:{port}" if port is not None else None


# ---------------------------------------------------------------------------------------------
# Processes, ports, logs
# ---------------------------------------------------------------------------------------------


def _running_as_root() -> bool:
    return os.geteuid() == 0


def _pid_alive(pid: int) -> bool:
    child = _CHILDREN.get(pid)
    if child is not None:
        return child.poll() is None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    # A dead child of some other long-lived process lingers as a zombie until reaped.
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return True  # no procfs: trust kill(pid, 0)
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


def _cmdline(pid: int) -> str:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return ""
    return raw.replace(b"\0", b" ").decode(errors="replace")


def _port_accepts(port: int | None) -> bool:
    if port is None:
        return False
    try:
        with socket.create_connection((LOOPBACK, port), timeout=TCP_PROBE_TIMEOUT_S):
            return True
    except OSError:
        return False


def _port_free(port: int | None) -> bool:
    if port is None:
        return False
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        # Kafka and PostgreSQL both bind with SO_REUSEADDR; mirroring them keeps a just-stopped
        # server's TIME_WAIT connections from making its own port look taken.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((LOOPBACK, port))
        except OSError:
            return False
    return True


def _fresh_port(exclude: set[int]) -> int:
    # Keep each probe socket bound until the loop ends so the kernel cannot hand out one port twice.
    probes: list[socket.socket] = []
    try:
        while True:
            probe = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            probes.append(probe)
            probe.bind((LOOPBACK, 0))
            port: int = probe.getsockname()[1]
            if port not in exclude:
                return port
    finally:
        for probe in probes:
            probe.close()


def _usable_port(current: int | None, exclude: set[int]) -> int:
    """Keep the port from an earlier run unless something else took it meanwhile."""
    if current is not None and current not in exclude and _port_free(current):
        return current
    return _fresh_port(exclude)


def _tail(path: Path, lines: int = LOG_TAIL_LINES, start_offset: int = 0) -> str:
    try:
        with open(path, "rb") as handle:
            size = handle.seek(0, os.SEEK_END)
            begin = max(start_offset if start_offset <= size else 0, size - LOG_TAIL_MAX_BYTES)
            handle.seek(begin)
            text = handle.read().decode(errors="replace")
    except OSError as exc:
        return f"(cannot read {path}: {exc})"
    return "\n".join(text.splitlines()[-lines:])


def _run(
    command: list[str],
    timeout_s: float,
    what: str,
    cwd: Path | None = None,
    input_text: str | None = None,
) -> str:
    try:
        result = subprocess.run(
            command,
            cwd=cwd,
            # Without input the child reads /dev/null, so it never waits on the caller's terminal.
            stdin=subprocess.DEVNULL if input_text is None else None,
            input=input_text,
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise StackError(f"{what} timed out after {timeout_s:.0f} s: {' '.join(command)}") from exc
    except OSError as exc:
        raise StackError(f"{what} could not run {command[0]}: {exc}") from exc
    if result.returncode != 0:
        output = "\n".join((result.stdout + result.stderr).splitlines()[-LOG_TAIL_LINES:])
        raise StackError(f"{what} failed (exit {result.returncode}): {' '.join(command)}\n{output}")
    return result.stdout


def _require_tool(name: str, hint: str) -> str:
    found = shutil.which(name)
    if found is None:
        raise StackError(f"`{name}` not found on PATH; {hint}")
    return found


# ---------------------------------------------------------------------------------------------
# Kafka
# ---------------------------------------------------------------------------------------------


def _kafka_home() -> Path:
    cache_root = os.environ.get("CREDITLEDGER_CACHE_DIR")
    base = Path(cache_root).expanduser() if cache_root else Path.home() / ".cache" / "creditledger"
    return base.resolve() / f"kafka-{KAFKA_VERSION}"


def _kafka_pom() -> str:
    dependencies = [
        ("org.apache.kafka", "kafka_2.13", KAFKA_VERSION),
        # Maven's kafka artifact leaves the logging backend out (the release tarball ships it).
        ("org.apache.logging.log4j", "log4j-api", LOG4J_VERSION),
        ("org.apache.logging.log4j", "log4j-core", LOG4J_VERSION),
        # The slf4j 1.x binding: Kafka logs through slf4j 1.7.
        ("org.apache.logging.log4j", "log4j-slf4j-impl", LOG4J_VERSION),
    ]
    entries = "\n".join(
        "    <dependency>\n"
        f"      <groupId>{group}</groupId>\n"
        f"      <artifactId>{artifact}</artifactId>\n"
        f"      <version>{version}</version>\n"
        "    </dependency>"
        for group, artifact, version in dependencies
    )
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<project xmlns="http://maven.apache.org/POM/4.0.0">\n'
        "  <modelVersion>4.0.0</modelVersion>\n"
        "  <groupId>local.creditledger</groupId>\n"
        "  <artifactId>kafka-runtime</artifactId>\n"
        f"  <version>{KAFKA_VERSION}</version>\n"
        "  <packaging>pom</packaging>\n"
        f"  <dependencies>\n{entries}\n  </dependencies>\n"
        "</project>\n"
    )


def _ensure_kafka_libs(progress: Callable[[str], None] = _no_phase) -> Path:
    """Fetch the broker's jars once; later runs (and other stack dirs) reuse the cache offline."""
    home = _kafka_home()
    libs = home / "libs"
    if (libs / LIBS_MARKER).is_file():
        return libs
    # Different stack dirs share this cache, so their first runs must not fetch into it at once.
    with _exclusive_lock(home / "fetch.lock", MAVEN_TIMEOUT_S + 60.0):
        if (libs / LIBS_MARKER).is_file():
            return libs
        mvn = _require_tool("mvn", "install Maven (apt-get install -y maven)")
        progress(f"fetching Kafka {KAFKA_VERSION}'s jars with Maven (once; up to 10 minutes)")
        pom = home / "pom.xml"
        pom.write_text(_kafka_pom(), encoding="utf-8")
        partial = home / "libs.partial"
        shutil.rmtree(partial, ignore_errors=True)
        command = [
            mvn, "-B", "-q", "-f", str(pom),
            f"{DEPENDENCY_PLUGIN}:copy-dependencies",
            "-DincludeScope=runtime",
            f"-DoutputDirectory={partial}",
        ]  # fmt: skip
        _run(command, MAVEN_TIMEOUT_S, "fetching Kafka jars with Maven", cwd=home)
        jars = sorted(p.name for p in partial.glob("*.jar"))
        if not any(name.startswith(f"kafka_2.13-{KAFKA_VERSION}") for name in jars):
            raise StackError(f"Maven finished but {partial} holds no kafka_2.13 jar: {jars}")
        shutil.rmtree(libs, ignore_errors=True)  # an earlier, unmarked (interrupted) copy
        partial.rename(libs)
        # The marker is written last: its presence means the directory is complete.
        (libs / LIBS_MARKER).write_text("\n".join(jars) + "\n", encoding="utf-8")
    return libs


def _kafka_pid_alive(paths: _Paths, pid: int | None) -> bool:
    # The command line check guards against a recycled pid and against another stack's broker.
    return pid is not None and _pid_alive(pid) and str(paths.kafka_config) in _cmdline(pid)


def _kafka_running(paths: _Paths, state: _State) -> bool:
    return _kafka_pid_alive(paths, state.kafka_pid) and _port_accepts(state.kafka_port)


def _ensure_kafka(
    paths: _Paths, state: _State, progress: Callable[[str], None] = _no_phase
) -> None:
    if _kafka_running(paths, state):
        return
    # A live pid without a listener is a broker that hung or never finished starting.
    _stop_kafka(paths, state)
    libs = _ensure_kafka_libs(progress)
    state.kafka_port = _usable_port(state.kafka_port, _taken_ports(state, "kafka_port"))
    state.controller_port = _usable_port(
        state.controller_port, _taken_ports(state, "controller_port")
    )
    _save_state(paths, state)
    _write_kafka_config(paths, state)
    _format_kafka_storage(paths, libs)
    progress(f"starting Kafka on port {state.kafka_port}")
    _start_kafka(paths, state, libs)


def _taken_ports(state: _State, field: str) -> set[int]:
    ports = {
        "kafka_port": state.kafka_port,
        "controller_port": state.controller_port,
        "postgres_port": state.postgres_port,
    }
    return {port for name, port in ports.items() if name != field and port is not None}


def _write_kafka_config(paths: _Paths, state: _State) -> None:
    for directory in (paths.kafka_config.parent, paths.kafka_data, paths.kafka_log.parent):
        directory.mkdir(parents=True, exist_ok=True)
    listeners = (
        f"PLAINTEXT://{LOOPBACK}:{state.kafka_port},CONTROLLER://{LOOPBACK}:{state.controller_port}"
    )
    properties = [
        "process.roles=broker,controller",
        "node.id=1",
        f"controller.quorum.bootstrap.servers={LOOPBACK}:{state.controller_port}",
        f"listeners={listeners}",
        f"advertised.listeners={listeners}",
        "inter.broker.listener.name=PLAINTEXT",
        "controller.listener.names=CONTROLLER",
        "listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
        f"log.dirs={paths.kafka_data}",
        "num.partitions=6",
        # Topics are created by the project with the contract's settings (kafka.ensure_topics);
        # a client asking for a missing one (a typo, a deleted topic) must fail, not get a topic
        # with the broker's defaults (no LogAppendTime, no DLT) that it then reads from offset 0.
        "auto.create.topics.enable=false",
        # Topics carry ledger events; a local stack must not silently drop the history that
        # consumers replay after a week-long pause. Local volumes are small, so keep everything.
        "log.retention.ms=-1",
        "offsets.topic.replication.factor=1",
        "offsets.topic.num.partitions=1",
        "transaction.state.log.replication.factor=1",
        "transaction.state.log.min.isr=1",
        "share.coordinator.state.topic.replication.factor=1",
        "share.coordinator.state.topic.min.isr=1",
        "group.initial.rebalance.delay.ms=0",
    ]
    paths.kafka_config.write_text("\n".join(properties) + "\n", encoding="utf-8")
    log4j = [
        "status = warn",
        "name = creditledger-kafka",
        # Log4j's own shutdown hook races Kafka's and stops logging before the broker's last
        # shutdown lines; files flush on every line anyway, so nothing needs that hook.
        "shutdownHook = disable",
        "appender.file.type = RollingFile",
        "appender.file.name = FILE",
        f"appender.file.fileName = {paths.kafka_log}",
        f"appender.file.filePattern = {paths.kafka_log}.%i",
        "appender.file.layout.type = PatternLayout",
        "appender.file.layout.pattern = [%d] %p %m (%c)%n",
        "appender.file.policies.type = Policies",
        "appender.file.policies.size.type = SizeBasedTriggeringPolicy",
        "appender.file.policies.size.size = 50MB",
        "appender.file.strategy.type = DefaultRolloverStrategy",
        "appender.file.strategy.max = 3",
        "rootLogger.level = INFO",
        "rootLogger.appenderRef.file.ref = FILE",
    ]
    paths.kafka_log4j.write_text("\n".join(log4j) + "\n", encoding="utf-8")


def _java() -> str:
    java_home = os.environ.get("JAVA_HOME")
    if java_home and (Path(java_home) / "bin" / "java").is_file():
        return str(Path(java_home) / "bin" / "java")
    return _require_tool("java", "install a JDK 17+ (apt-get install -y openjdk-17-jre-headless)")


def _kafka_java_command(paths: _Paths, libs: Path, main_class: str) -> list[str]:
    return [
        _java(),
        "-cp", f"{libs}/*",
        f"-Dlog4j2.configurationFile={paths.kafka_log4j}",
        main_class,
    ]  # fmt: skip


def _new_cluster_id() -> str:
    while True:
        cluster_id = base64.urlsafe_b64encode(os.urandom(16)).decode().rstrip("=")
        # Kafka's own generator rejects ids starting with '-' because CLIs read them as flags.
        if not cluster_id.startswith("-"):
            return cluster_id


def _format_kafka_storage(paths: _Paths, libs: Path) -> None:
    # meta.properties is what the format step writes; its presence means "formatted already".
    if (paths.kafka_data / "meta.properties").is_file():
        return
    command = [
        *_kafka_java_command(paths, libs, "kafka.tools.StorageTool"),
        "format", "--standalone",
        "-t", _new_cluster_id(),
        "-c", str(paths.kafka_config),
    ]  # fmt: skip
    _run(command, KAFKA_FORMAT_TIMEOUT_S, "formatting Kafka storage", cwd=paths.kafka_dir)


def _raise_open_files_limit() -> None:
    # Kafka holds three files per partition segment: a broker with thousands of partitions
    # (test namespaces, bench runs) outgrows a 20,000 soft limit, and then fails to start.
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = max(hard, KAFKA_OPEN_FILES) if _running_as_root() else hard
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, wanted))
    except (ValueError, OSError):  # not allowed past the hard limit here: take what we may
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def _start_kafka(paths: _Paths, state: _State, libs: Path) -> None:
    # server.log is appended across runs; only lines after this offset belong to this start.
    log_offset = paths.kafka_log.stat().st_size if paths.kafka_log.exists() else 0
    command = _kafka_java_command(paths, libs, "kafka.Kafka")
    # 512 MB ran out under the benchmark's million-event load (many partitions fetched at once,
    # big produce batches); a gigabyte is 4 % of our 24 GB machines.
    command[1:1] = ["-Xmx1g", "-Xms256m", "-XX:+ExitOnOutOfMemoryError"]
    command.append(str(paths.kafka_config))
    with open(paths.kafka_stdout, "wb") as stdout:
        process = subprocess.Popen(
            command,
            cwd=paths.kafka_dir,
            stdin=subprocess.DEVNULL,
            stdout=stdout,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # outlive the caller and ignore its terminal's Ctrl-C
            preexec_fn=_raise_open_files_limit,
        )
    _CHILDREN[process.pid] = process
    state.kafka_pid = process.pid
    _save_state(paths, state)
    try:
        _wait_kafka_ready(paths, state, process, log_offset)
    except StackError:
        _stop_kafka(paths, state)
        raise


def _wait_kafka_ready(
    paths: _Paths, state: _State, process: subprocess.Popen[bytes], log_offset: int
) -> None:
    deadline_s = time.monotonic() + KAFKA_READY_TIMEOUT_S
    while True:
        if process.poll() is not None:
            raise StackError(
                f"Kafka exited with code {process.returncode} while starting\n"
                f"{_kafka_logs(paths, log_offset)}"
            )
        started = KAFKA_STARTED_MARKER in _log_since(paths.kafka_log, log_offset)
        if started and _port_accepts(state.kafka_port):
            return
        if time.monotonic() >= deadline_s:
            raise StackError(
                f"Kafka did not start within {KAFKA_READY_TIMEOUT_S:.0f} s "
                f"(listener {LOOPBACK}:{state.kafka_port})\n{_kafka_logs(paths, log_offset)}"
            )
        time.sleep(POLL_INTERVAL_S)


def _log_since(path: Path, offset: int) -> str:
    try:
        with open(path, "rb") as handle:
            size = handle.seek(0, os.SEEK_END)
            handle.seek(offset if offset <= size else 0)  # smaller than offset: it rolled over
            return handle.read().decode(errors="replace")
    except FileNotFoundError:
        return ""


def _kafka_logs(paths: _Paths, log_offset: int) -> str:
    # Startup crashes (bad classpath, JVM errors) reach stdout only, so show both files.
    return (
        f"--- last {LOG_TAIL_LINES} lines of {paths.kafka_log} ---\n"
        f"{_tail(paths.kafka_log, start_offset=log_offset)}\n"
        f"--- last {LOG_TAIL_LINES} lines of {paths.kafka_stdout} ---\n"
        f"{_tail(paths.kafka_stdout)}"
    )


def _stop_kafka(paths: _Paths, state: _State) -> None:
    pid = state.kafka_pid
    if pid is not None and _kafka_pid_alive(paths, pid):
        # SIGTERM runs Kafka's controlled shutdown, which flushes logs and snapshots cleanly.
        os.kill(pid, signal.SIGTERM)
        if not _wait_exit(pid, KAFKA_TERM_TIMEOUT_S):
            os.kill(pid, signal.SIGKILL)
            if not _wait_exit(pid, KAFKA_KILL_TIMEOUT_S):
                raise StackError(
                    f"Kafka (pid {pid}) survived SIGKILL for {KAFKA_KILL_TIMEOUT_S:.0f} s"
                )
    if pid is not None:
        _CHILDREN.pop(pid, None)
    if state.kafka_pid is not None:
        state.kafka_pid = None
        _save_state(paths, state)


def _wait_exit(pid: int, timeout_s: float) -> bool:
    deadline_s = time.monotonic() + timeout_s
    while _pid_alive(pid):
        if time.monotonic() >= deadline_s:
            return False
        time.sleep(POLL_INTERVAL_S)
    return True


# ---------------------------------------------------------------------------------------------
# PostgreSQL
# ---------------------------------------------------------------------------------------------


def _pg_bindir() -> Path:
    required = ("initdb", "pg_ctl", "psql")
    pg_config = shutil.which("pg_config")
    if pg_config is not None:
        # pg_config can come from libpq-dev without a server next to it, hence the file check.
        with contextlib.suppress(StackError):
            bindir = Path(_run([pg_config, "--bindir"], 30.0, "pg_config").strip())
            if all((bindir / tool).is_file() for tool in required):
                return bindir
    candidates = [
        bindir
        for bindir in Path("/usr/lib/postgresql").glob("*/bin")
        if all((bindir / tool).is_file() for tool in required)
    ]
    if not candidates:
        raise StackError(
            "PostgreSQL server binaries not found; "
            "install them with `apt-get install -y postgresql`"
        )
    return max(candidates, key=lambda d: _version_key(d.parent.name))


def _version_key(name: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in name.split("."))
    except ValueError:
        return (-1,)


def _as_pg_user(command: list[str]) -> list[str]:
    # PostgreSQL refuses to run initdb, pg_ctl or the server as root.
    if _running_as_root():
        return [_require_tool("runuser", "install util-linux"), "-u", POSTGRES_USER, "--", *command]
    return command


def _postmaster_pid(pg: _PgPaths) -> int | None:
    try:
        first_line = (pg.data / "postmaster.pid").read_text(encoding="utf-8").split("\n", 1)[0]
    except OSError:
        return None
    try:
        pid = int(first_line.strip())
    except ValueError:
        return None
    return pid if _pid_alive(pid) else None


def _postgres_running(state: _State, pg: _PgPaths) -> bool:
    return _postmaster_pid(pg) is not None and _port_accepts(state.postgres_port)


def _ensure_postgres(
    paths: _Paths, state: _State, pg: _PgPaths, progress: Callable[[str], None] = _no_phase
) -> None:
    bindir = _pg_bindir()
    if not _postgres_running(state, pg):
        # A postmaster without our listener (hung, or started on another port) must go first:
        # pg_ctl start refuses to run while postmaster.pid names a live process.
        _stop_postgres(pg)
        state.postgres_port = _usable_port(
            state.postgres_port, _taken_ports(state, "postgres_port")
        )
        _save_state(paths, state)
        _prepare_pg_dirs(pg)
        if not (pg.data / "PG_VERSION").is_file():
            progress("initialising Postgres' data directory (initdb)")
        _initdb(bindir, pg)
        progress(f"starting Postgres on port {state.postgres_port}")
        _start_postgres(bindir, pg, state.postgres_port)
    _ensure_database(bindir, state)


def _prepare_pg_dirs(pg: _PgPaths) -> None:
    for directory in (pg.root, pg.socket_dir):
        directory.mkdir(parents=True, exist_ok=True)
        directory.chmod(0o700)
        if _running_as_root():
            account = pwd.getpwnam(POSTGRES_USER)
            os.chown(directory, account.pw_uid, account.pw_gid)


def _initdb(bindir: Path, pg: _PgPaths) -> None:
    if (pg.data / "PG_VERSION").is_file():
        return
    command = _as_pg_user([
        str(bindir / "initdb"),
        "-D", str(pg.data),
        "-A", "trust",
        "-U", POSTGRES_USER,
        "-E", "UTF8",
        "--locale=C.UTF-8",
    ])  # fmt: skip
    _run(command, PG_COMMAND_TIMEOUT_S, "initdb", cwd=pg.root)


def server_settings(bindir: Path) -> dict[str, str]:
    """POSTGRES_SETTINGS, less a preloaded library this server's build lacks (a server told to
    preload a module it does not have refuses to start; the bench then notes the missing profile).
    Debian's layout: the server's modules are in `../lib` beside its `bin`."""
    settings = dict(POSTGRES_SETTINGS)
    libraries = [
        name
        for name in settings.get("shared_preload_libraries", "").split(",")
        if name and (bindir.parent / "lib" / f"{name}.so").is_file()
    ]
    settings.pop("shared_preload_libraries", None)
    if libraries:
        settings["shared_preload_libraries"] = ",".join(libraries)
    return settings


def _start_postgres(bindir: Path, pg: _PgPaths, port: int | None) -> None:
    # fsync stays on: this database holds a ledger, and tests should see real durability costs.
    tuning = " ".join(f"-c {name}={value}" for name, value in server_settings(bindir).items())
    server_options = f"-p {port} -k {pg.socket_dir} -c listen_addresses={LOOPBACK} {tuning}"
    command = _as_pg_user([
        str(bindir / "pg_ctl"),
        "-D", str(pg.data),
        "-o", server_options,
        "-w", "-t", str(PG_START_TIMEOUT_S),
        "-l", str(pg.log),
        "start",
    ])  # fmt: skip
    try:
        _run(command, PG_COMMAND_TIMEOUT_S, "starting PostgreSQL", cwd=pg.root)
    except StackError as exc:
        raise StackError(
            f"{exc}\n--- last {LOG_TAIL_LINES} lines of {pg.log} ---\n{_tail(pg.log)}"
        ) from exc


def _stop_postgres(pg: _PgPaths, mode: str = "fast") -> None:
    if _postmaster_pid(pg) is None:
        return
    command = _as_pg_user([
        str(_pg_bindir() / "pg_ctl"),
        "-D", str(pg.data),
        "-m", mode,
        "-w", "-t", str(PG_STOP_TIMEOUT_S),
        "stop",
    ])  # fmt: skip
    _run(command, PG_COMMAND_TIMEOUT_S, "stopping PostgreSQL", cwd=pg.root)


def _ensure_database(bindir: Path, state: _State) -> None:
    # psql quotes :'db' and :"db" itself; it interpolates variables only in scripts read from
    # stdin, not in -c commands, hence the script.
    exists = _psql(bindir, state, "SELECT 1 FROM pg_database WHERE datname = :'db';\n")
    if exists.strip() != "1":
        _psql(bindir, state, 'CREATE DATABASE :"db";\n')


def _psql(bindir: Path, state: _State, script: str) -> str:
    # TCP with trust auth works for any OS user, so psql needs no runuser.
    command = [
        str(bindir / "psql"),
        "-X", "-q", "-t", "-A",
        "-v", "ON_ERROR_STOP=1",
        "-v", f"db={DATABASE_NAME}",
        "-h", LOOPBACK,
        "-p", str(state.postgres_port),
        "-U", POSTGRES_USER,
        "-d", "postgres",
    ]  # fmt: skip
    return _run(command, PSQL_TIMEOUT_S, "psql", input_text=script)
