"""The architecture rule: services/core is pure. It imports only itself and harmless stdlib.

Every import in services/core (absolute, relative, inside functions or TYPE_CHECKING blocks)
must resolve either within `services.core` or to a standard-library module that does no I/O and
no concurrency. A clock or a socket in the core would make a replay differ from the original run.
"""

from __future__ import annotations

import ast
import sys
from dataclasses import dataclass
from pathlib import Path

CORE_PACKAGE = "services.core"
REPO_ROOT = Path(__file__).resolve().parents[2]
CORE_DIR = REPO_ROOT / "services" / "core"

# Standard-library modules the core must not import: I/O, processes, concurrency, clocks,
# randomness, dynamic imports.
FORBIDDEN_STDLIB = frozenset(
    {
        "asyncio",
        "concurrent",
        "ctypes",
        "dbm",
        "fcntl",
        "fileinput",
        "ftplib",
        "glob",
        "http",
        "imaplib",
        "importlib",
        "io",
        "logging",
        "mmap",
        "multiprocessing",
        "os",
        "pathlib",
        "poplib",
        "pty",
        "queue",
        "random",
        "sched",
        "secrets",
        "select",
        "selectors",
        "shelve",
        "shutil",
        "signal",
        "smtplib",
        "socket",
        "socketserver",
        "sqlite3",
        "ssl",
        "subprocess",
        "tempfile",
        "threading",
        "time",
        "urllib",
        "webbrowser",
        "xmlrpc",
        "zipfile",
        "tarfile",
    }
)

# Calls that read a clock, draw randomness or do I/O without any import.
FORBIDDEN_CALLS = frozenset(
    {"now", "utcnow", "today", "uuid1", "uuid4", "open", "print", "input", "__import__"}
)


@dataclass(frozen=True, slots=True)
class Violation:
    path: str
    line: int
    what: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.what}"


def module_package(path: Path) -> str:
    """The package a core file's relative imports resolve against."""
    relative = path.relative_to(REPO_ROOT).with_suffix("")
    return ".".join(relative.parts[:-1])


def resolve_from(node: ast.ImportFrom, package: str) -> str | None:
    """The absolute module of `from X import Y`; None when a relative import climbs too high."""
    if node.level == 0:
        return node.module or ""
    parts = package.split(".")
    if node.level - 1 >= len(parts):
        return None
    base = parts[: len(parts) - (node.level - 1)]
    return ".".join([*base, node.module] if node.module else base)


def is_allowed(module: str) -> bool:
    if module == CORE_PACKAGE or module.startswith(CORE_PACKAGE + "."):
        return True
    top = module.split(".")[0]
    return top in sys.stdlib_module_names and top not in FORBIDDEN_STDLIB


def import_violations(source: str, path: str, package: str) -> list[Violation]:
    found: list[Violation] = []
    for node in ast.walk(ast.parse(source, filename=path)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if not is_allowed(alias.name):
                    found.append(Violation(path, node.lineno, f"import {alias.name}"))
        elif isinstance(node, ast.ImportFrom):
            module = resolve_from(node, package)
            written = "." * node.level + (node.module or "")
            if module is None:
                found.append(Violation(path, node.lineno, f"from {written}: beyond the root"))
            elif not is_allowed(module):
                found.append(Violation(path, node.lineno, f"from {written} (= {module})"))
    return sorted(found, key=lambda v: v.line)


def call_violations(source: str, path: str) -> list[Violation]:
    found: list[Violation] = []
    for node in ast.walk(ast.parse(source, filename=path)):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
        if name in FORBIDDEN_CALLS:
            found.append(Violation(path, node.lineno, f"calls {name}()"))
    return sorted(found, key=lambda v: v.line)


def core_files() -> list[Path]:
    return sorted(CORE_DIR.rglob("*.py"))


def report(violations: list[Violation]) -> str:
    return "services/core must stay pure:\n" + "\n".join(str(v) for v in violations)


def test_core_has_the_expected_modules_so_the_rule_is_not_vacuous() -> None:
    names = {path.name for path in core_files()}
    assert {"__init__.py", "decide.py", "evolve.py", "model.py", "pricing.py"} <= names


def test_core_imports_only_itself_and_pure_stdlib() -> None:
    violations: list[Violation] = []
    for path in core_files():
        relative = str(path.relative_to(REPO_ROOT))
        violations += import_violations(path.read_text(), relative, module_package(path))
    assert not violations, report(violations)


def test_core_reads_no_clock_draws_no_randomness_and_does_no_io() -> None:
    violations: list[Violation] = []
    for path in core_files():
        violations += call_violations(path.read_text(), str(path.relative_to(REPO_ROOT)))
    assert not violations, report(violations)


def test_checker_catches_third_party_and_io_imports_with_their_lines() -> None:
    source = "from __future__ import annotations\nimport asyncpg\nimport asyncio\n"
    found = import_violations(source, "services/core/bad.py", CORE_PACKAGE)
    assert [str(v) for v in found] == [
        "services/core/bad.py:2: import asyncpg",
        "services/core/bad.py:3: import asyncio",
    ]


def test_checker_catches_forbidden_from_imports_submodules_and_nested_imports() -> None:
    source = (
        "import os.path\n"
        "from time import monotonic\n"
        "from services.writer import plan\n"
        "def f() -> None:\n"
        "    import socket\n"
        "if False:\n"
        "    from pydantic import BaseModel\n"
    )
    found = import_violations(source, "x.py", CORE_PACKAGE)
    assert [(v.line, v.what) for v in found] == [
        (1, "import os.path"),
        (2, "from time (= time)"),
        (3, "from services.writer (= services.writer)"),
        (5, "import socket"),
        (7, "from pydantic (= pydantic)"),
    ]


def test_checker_resolves_relative_imports_against_the_package() -> None:
    source = (
        "from . import model\n"
        "from .model import Bucket\n"
        "from .. import writer\n"
        "from ..writer.plan import plan_batch\n"
        "from .... import nothing\n"
    )
    found = import_violations(source, "services/core/x.py", CORE_PACKAGE)
    assert [(v.line, v.what) for v in found] == [
        (3, "from .. (= services)"),
        (4, "from ..writer.plan (= services.writer.plan)"),
        (5, "from ....: beyond the root"),
    ]


def test_checker_allows_core_and_pure_stdlib_imports() -> None:
    source = (
        "from __future__ import annotations\n"
        "import uuid\n"
        "from collections.abc import Mapping\n"
        "from dataclasses import dataclass\n"
        "from datetime import datetime\n"
        "import services.core.model\n"
        "from services.core.evolve import evolve\n"
    )
    assert import_violations(source, "ok.py", CORE_PACKAGE) == []


def test_checker_catches_clock_and_randomness_calls() -> None:
    source = "a = datetime.now(UTC)\nb = uuid.uuid4()\nc = uuid.uuid5(NS, 'x')\nopen('f')\n"
    found = call_violations(source, "x.py")
    assert [(v.line, v.what) for v in found] == [
        (1, "calls now()"),
        (2, "calls uuid4()"),
        (4, "calls open()"),
    ]


def test_module_package_of_core_files_is_services_core() -> None:
    assert module_package(CORE_DIR / "decide.py") == "services.core"
    assert module_package(CORE_DIR / "__init__.py") == "services.core"
