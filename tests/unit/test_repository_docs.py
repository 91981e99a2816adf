"""The README and docs/ name nothing outside the repository, and what they link exists.

A clone has only the repository: a path into the workspace it was made in (`../shared/…`,
`/work/…`) is a dead end for every reader. The same holds for every text file we ship and for
the command line's help.
"""

from __future__ import annotations

import contextlib
import io
import re
import subprocess
from pathlib import Path

import pytest

from services.cli import build_parser
from tests.unit.test_cli_help import COMMANDS
from tests.unit.test_cli_help import _commands as commands

ROOT = Path(__file__).resolve().parents[2]
OUTSIDE = re.compile(r"\.\./|/work/|\bshared/")  # a parent directory, the workspace, its share
LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")  # [text](target) and [text](target#anchor)
# Pages linked before they exist on this branch: written by work merged alongside (issue 15).
WRITTEN_ELSEWHERE = {"docs/webhooks.md"}


def documents() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("**/*.md"))]


def outside_references(text: str) -> list[str]:
    return [
        f"line {number}: {line.strip()}"
        for number, line in enumerate(text.splitlines(), 1)
        if OUTSIDE.search(line)
    ]


def test_the_docs_exist() -> None:
    names = {p.relative_to(ROOT).as_posix() for p in documents()}
    assert {"README.md", "docs/contract.md", "docs/architecture.md", "docs/operations.md",
            "docs/api.md"} <= names  # fmt: skip


@pytest.mark.parametrize("path", documents(), ids=lambda p: p.relative_to(ROOT).as_posix())
def test_a_document_names_nothing_outside_the_repository(path: Path) -> None:
    assert outside_references(path.read_text()) == []


@pytest.mark.parametrize("path", documents(), ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_relative_link_resolves_inside_the_repository(path: Path) -> None:
    broken = []
    for target in LINK.findall(path.read_text()):
        if re.match(r"^[a-z]+:", target):  # http:, https:, mailto:
            continue
        resolved = (path.parent / target).resolve()
        relative = resolved.relative_to(ROOT).as_posix() if resolved.is_relative_to(ROOT) else None
        if relative is None or (not resolved.exists() and relative not in WRITTEN_ELSEWHERE):
            broken.append(target)
    assert broken == []


def test_the_readme_says_where_the_admin_token_is() -> None:
    text = (ROOT / "README.md").read_text()
    assert ".creditledger/admin-token" in text and "CREDITLEDGER_ADMIN_TOKEN" in text
    for page in ("docs/contract.md", "docs/architecture.md", "docs/operations.md", "docs/api.md"):
        assert f"]({page})" in text


def test_the_readme_keeps_its_two_set_up_commands_first() -> None:
    blocks = re.findall(r"```sh\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    first = [line.split("#")[0].strip() for line in blocks[0].splitlines()]
    assert first == ["make run", "make test"]


def test_the_contract_copy_says_it_is_the_one_followed() -> None:
    head = (ROOT / "docs" / "contract.md").read_text()[:400]
    assert "This copy is the contract" in head and "v1.1" in (ROOT / "docs/contract.md").read_text()


def test_no_shipped_text_file_points_into_the_workspace() -> None:
    listed = (
        subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True)
        .stdout.decode()
        .split("\0")
    )
    offenders = []
    for name in filter(None, listed):
        path = ROOT / name
        if path.suffix not in {".py", ".md", ".toml", ".yaml", ".yml", ".sql", ".sh", ".txt", ""}:
            continue
        if path == Path(__file__) or not path.is_file():
            continue
        text = path.read_text(errors="replace")
        offenders += [f"{name} {hit}" for hit in outside_references(text) if "shared/" in hit]
    assert offenders == []


@pytest.mark.parametrize("path", COMMANDS, ids=lambda p: " ".join(p) or "creditledger")
def test_no_help_text_points_outside(path: tuple[str, ...]) -> None:
    parser = dict(commands(build_parser()))[path]
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        parser.print_help()
    assert outside_references(out.getvalue()) == []


def test_the_check_catches_outside_paths() -> None:
    assert outside_references("see ../shared/contract.md") != []
    assert outside_references("at /" + "work/shared/x") != []  # split: no machine path here
    assert outside_references("see docs/contract.md and services/api/README.md") == []


def test_operations_documents_every_setting() -> None:
    from services.platform.settings import Settings

    text = (ROOT / "docs" / "operations.md").read_text()
    missing = [
        f"CREDITLEDGER_{name.upper()}"
        for name in Settings.model_fields
        if f"`CREDITLEDGER_{name.upper()}`" not in text
    ]
    assert missing == [], f"document {', '.join(missing)} in docs/operations.md (Settings)"


def test_operations_states_the_local_postgres_settings() -> None:
    from services.platform.stack import POSTGRES_SETTINGS

    text = (ROOT / "docs" / "operations.md").read_text()
    rows = [line for line in text.splitlines() if line.startswith("| `")]
    for name, value in POSTGRES_SETTINGS.items():
        assert any(f"`{name}`" in row and value in row for row in rows), f"{name} = {value}"
