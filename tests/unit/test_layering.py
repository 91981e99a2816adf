"""The layering rules of the house, read from the source with `ast` (no import runs):

- `schemas` (the published contracts) imports no service and no projection;
- the read API (`services.api`) and the read models (`projections`) never reach the writer
  (`services.writer`), directly or through another module of ours: a read path that could
  append to the ledger, or that a writer change can break, is a bug;
- `services.core` imports only itself and the standard library (the finer rule, which stdlib
  modules, is tests/unit/test_core_imports.py).

Every import counts: top-level, inside functions, under TYPE_CHECKING. Importing `a.b.c` also
runs `a/__init__.py` and `a/b/__init__.py`, so those count too.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("schemas", "services", "projections")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_package(path: Path) -> bool:
    return path.name == "__init__.py"


def imported_names(source: str, module: str, package: bool) -> set[str]:
    """Absolute names of every module `source` imports (`from a import b` yields a and a.b)."""
    base = module if package else module.rpartition(".")[0]
    names: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                anchor = base.split(".")[: len(base.split(".")) - node.level + 1]
                origin = ".".join([*anchor, *([node.module] if node.module else [])])
            else:
                origin = node.module or ""
            names.add(origin)
            names.update(f"{origin}.{alias.name}" for alias in node.names)
    return names


def our_modules() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            found[module_name(path)] = path
    return found


def _with_parents(name: str) -> Iterable[str]:
    parts = name.split(".")
    return (".".join(parts[:i]) for i in range(1, len(parts) + 1))


def import_graph(modules: dict[str, Path]) -> dict[str, set[str]]:
    """Module -> the modules of ours that importing it runs (parents' __init__ included)."""
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        imported = imported_names(path.read_text(), name, _is_package(path))
        graph[name] = {
            parent for target in imported for parent in _with_parents(target) if parent in modules
        } - {name}
    return graph


def _tolerated(importer: str, target: str, tolerated: frozenset[tuple[str, str]]) -> bool:
    """`from a import b` is edges to a and a.b: a tolerated a.b covers its package a too."""
    return any(
        importer == who and (target == what or f"{target}.".startswith(f"{what}.")
                             or what.startswith(f"{target}."))
        for who, what in tolerated
    )  # fmt: skip


def path_to(
    graph: dict[str, set[str]],
    start: str,
    forbidden: str,
    tolerated: frozenset[tuple[str, str]] = frozenset(),
) -> list[str] | None:
    """The first import chain from `start` into `forbidden` (a package) not using a
    `tolerated` edge, or None."""
    seen, queue = {start}, [[start]]
    while queue:
        chain = queue.pop(0)
        for target in sorted(graph.get(chain[-1], ())):
            if _tolerated(chain[-1], target, tolerated):
                continue
            if target == forbidden or target.startswith(forbidden + "."):
                return [*chain, target]
            if target not in seen:
                seen.add(target)
                queue.append([*chain, target])
    return None


MODULES = our_modules()
GRAPH = import_graph(MODULES)


def _under(prefix: str) -> list[str]:
    return sorted(m for m in MODULES if m == prefix or m.startswith(prefix + "."))


# Imports that break a rule today, each with why and what removes it. The list may only shrink:
# a new breach fails the test, and so does an entry whose import is gone (delete it then).
TOLERATED = {
    ("schemas.price_book", "services.core.pricing"): "the price book's versions are the core's "
    "PriceVersion; the pure core (stdlib only) cannot reach a service from there",
    ("schemas.export", "services.api.app"): "the exporter (creditledger schemas export) renders "
    "the OpenAPI document of the app; a tool in schemas/, imported by no service",
}
TOLERATED_EDGES = frozenset(TOLERATED)

RULES = [
    ("schemas", "services"),
    ("schemas", "projections"),
    ("services.api", "services.writer"),
    ("projections", "services.writer"),
]


@pytest.mark.parametrize(("layer", "forbidden"), RULES, ids=lambda v: str(v))
def test_layer_never_reaches_the_forbidden_package(layer: str, forbidden: str) -> None:
    modules = _under(layer)
    assert len(modules) > 3, f"{layer}: the rule would be vacuous"
    chains = [
        chain
        for module in modules
        if (chain := path_to(GRAPH, module, forbidden, TOLERATED_EDGES)) is not None
    ]
    assert not chains, f"{layer} must not import {forbidden}:\n" + "\n".join(
        " -> ".join(chain) for chain in chains
    )


@pytest.mark.parametrize(("importer", "imported"), sorted(TOLERATED), ids=lambda v: str(v))
def test_every_tolerated_breach_still_exists(importer: str, imported: str) -> None:
    assert imported in GRAPH[importer], f"{importer} no longer imports {imported}: drop it"


def test_core_imports_only_itself_and_the_standard_library() -> None:
    outside: list[str] = []
    for module in _under("services.core"):
        path = MODULES[module]
        for name in imported_names(path.read_text(), module, _is_package(path)):
            top = name.split(".")[0]
            if name.startswith("services.core") or top in sys.stdlib_module_names:
                continue
            outside.append(f"{module}: {name}")
    assert not outside, "services.core imports beyond itself and the stdlib:\n" + "\n".join(outside)


# The checker itself must be able to fail.


def test_a_direct_import_is_found() -> None:
    names = imported_names("from services.writer.store import x\n", "projections.a", False)
    assert "services.writer.store" in names


def test_relative_and_nested_imports_resolve() -> None:
    source = "def f():\n    from ...writer import runner\n    from . import b\n"
    names = imported_names(source, "services.api.reads.balance", False)
    assert {"services.writer", "services.writer.runner", "services.api.reads.b"} <= names
    names = imported_names("from .. import app\n", "services.api.reads", True)
    assert "services.api.app" in names
    names = imported_names("from .common import x\n", "services.api.reads.balance", False)
    assert "services.api.reads.common" in names


def test_a_chain_through_another_module_is_found() -> None:
    graph = {"projections.a": {"services.platform.b"}, "services.platform.b": {"services.writer"}}
    assert path_to(graph, "projections.a", "services.writer") == [
        "projections.a", "services.platform.b", "services.writer",
    ]  # fmt: skip
    assert path_to(graph, "services.platform.b", "projections") is None
    tolerated = frozenset({("services.platform.b", "services.writer")})
    assert path_to(graph, "projections.a", "services.writer", tolerated) is None


def test_the_graph_sees_real_imports() -> None:
    assert "services.writer.store" in GRAPH["services.writer.runner"] or any(
        m.startswith("services.writer") for m in GRAPH["services.writer.runner"]
    )
    assert "services" in GRAPH["services.api.app"]  # a parent package's __init__ runs too
