"""One list each of the ledger's entry reasons and of admin token scopes.

The reasons are the contract's `EntryReasonName` (schemas/ledger.py); the core's `EntryReason`
enum (the core imports only the stdlib, so it cannot import schemas) must name the same ones.
The scopes are `services.api.auth.SCOPES`. No other module may spell either list out again: a
copy is where a new reason or scope gets forgotten.
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import get_args

from schemas.ledger import EntryReasonName
from services.api import auth, routes_tokens
from services.api.reads import ledger
from services.core.model import EntryReason

ROOT = Path(__file__).resolve().parents[2]
REASONS = frozenset(get_args(EntryReasonName))
SCOPES = frozenset(auth.SCOPES)
HOMES = {REASONS: "schemas/ledger.py", SCOPES: "services/api/auth.py"}


def test_the_core_enum_names_the_contract_reasons() -> None:
    assert {reason.value for reason in EntryReason} == REASONS


def test_the_api_uses_the_one_lists() -> None:
    assert get_args(EntryReasonName) == ledger.REASONS
    assert routes_tokens.NewAdminToken.model_fields["scopes"].annotation == list[auth.Scope]


def _string_collections(source: str) -> list[tuple[int, frozenset[str]]]:
    """Every tuple, list or set of two or more string literals, and every Literal[...]."""
    found = []
    for node in ast.walk(ast.parse(source)):
        items: list[ast.expr] | None = None
        if isinstance(node, ast.Tuple | ast.List | ast.Set):
            items = list(node.elts)
        if (
            items
            and len(items) >= 2
            and all(isinstance(i, ast.Constant) and isinstance(i.value, str) for i in items)
        ):
            found.append((node.lineno, frozenset(str(i.value) for i in items)))  # type: ignore[attr-defined]
    return found


def copies(root: Path) -> list[str]:
    out = []
    for package in ("schemas", "services", "projections"):
        for path in sorted((root / package).rglob("*.py")):
            relative = path.relative_to(root).as_posix()
            for line, strings in _string_collections(path.read_text()):
                for whole, home in HOMES.items():
                    if strings == whole and relative != home:
                        out.append(f"{relative}:{line} repeats the list of {home}")
    return out


def test_no_module_repeats_the_lists() -> None:
    assert copies(ROOT) == []


def test_the_check_finds_a_copy(tmp_path: Path) -> None:
    (tmp_path / "services").mkdir()
    reasons = ", ".join(f'"{r}"' for r in sorted(REASONS))
    (tmp_path / "services" / "x.py").write_text(f"R = ({reasons})\nS = {sorted(SCOPES)!r}\n")
    assert copies(tmp_path) == [
        "services/x.py:1 repeats the list of schemas/ledger.py",
        "services/x.py:2 repeats the list of services/api/auth.py",
    ]
