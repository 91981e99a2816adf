"""Value types (services/core/value.py) behave as the frozen dataclasses they replaced, and the
type checker refuses what the frozen dataclass refused at run time: assigning a field."""

from __future__ import annotations

import ast
import dataclasses
import inspect
import subprocess
import sys
import textwrap
from datetime import UTC, datetime
from pathlib import Path

import pytest

from services.core import model
from services.core.model import AccountState, Bucket, BucketKind, Draw, LedgerEntry

ROOT = Path(__file__).resolve().parents[2]
AT = datetime(2026, 12, 1, tzinfo=UTC)

VALUE_TYPES = [
    obj
    for obj in vars(model).values()
    if inspect.isclass(obj) and dataclasses.is_dataclass(obj) and obj.__module__ == model.__name__
]


def test_every_model_record_is_a_slotted_hashable_dataclass() -> None:
    assert len(VALUE_TYPES) >= 20
    for cls in VALUE_TYPES:
        assert "__slots__" in vars(cls), cls
        assert cls.__hash__ is not None, cls  # as a frozen dataclass with eq: usable as a key


def test_equal_values_are_equal_and_hash_equal() -> None:
    draw = Draw("g1", BucketKind.GIFT, 3)
    assert draw == Draw("g1", BucketKind.GIFT, 3)
    assert hash(draw) == hash(Draw("g1", BucketKind.GIFT, 3))
    assert draw != Draw("g1", BucketKind.GIFT, 4)
    assert {draw: 1}[Draw("g1", BucketKind.GIFT, 3)] == 1


def test_replace_builds_a_new_value_and_leaves_the_old_one() -> None:
    bucket = Bucket("g1", BucketKind.PURCHASED, 30, AT, None, 1, 100)
    spent = dataclasses.replace(bucket, remaining=40)
    assert (bucket.remaining, spent.remaining) == (100, 40)
    state = AccountState("acct-1", buckets=(bucket,))
    assert dataclasses.replace(state, seq=2).buckets == (bucket,)


def test_no_field_has_a_mutable_default_shared_between_values() -> None:
    one, other = AccountState("a"), AccountState("b")
    assert one.consumptions is not other.consumptions  # default_factory, as before
    assert one.settings is other.settings  # one shared default, hence frozen at run time
    with pytest.raises(dataclasses.FrozenInstanceError):
        one.settings.credit_limit = 5  # type: ignore[misc]


def test_the_type_checker_refuses_assigning_a_field(tmp_path: Path) -> None:
    """The guard a frozen dataclass gave at run time, kept where it is cheaper: `make check`."""
    probe = tmp_path / "assign_probe.py"
    probe.write_text(
        textwrap.dedent(
            """
            from services.core.model import Draw, BucketKind, LedgerEntry
            draw = Draw("g", BucketKind.GIFT, 3)
            draw.amount = 4
            def bump(entry: LedgerEntry) -> None:
                entry.seq += 1
            """
        )
    )
    done = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-incremental", str(probe)],
        cwd=ROOT, capture_output=True, text=True, check=False, timeout=300,
    )  # fmt: skip
    assert done.returncode == 1, done.stdout + done.stderr
    assert done.stdout.count("is read-only") == 2, done.stdout


# Shared as defaults (`AccountState.settings`, `.flags`, the built-in price book): one instance
# behind many values, so frozen at run time as well, where `setattr` would reach them all.
SHARED_DEFAULTS = {"AutoReload", "AccountSettings", "AlertFlags", "PriceBook"}


@pytest.mark.parametrize("package", ["services/core", "services/writer"])
def test_the_core_and_writer_declare_records_as_value_types(package: str) -> None:
    """No `@dataclass(frozen=True)` left where records are built per event: one way to declare
    an immutable record, the cheap one; the shared defaults excepted."""
    for path in (ROOT / package).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef):
                for decorator in node.decorator_list:
                    frozen = isinstance(decorator, ast.Call) and any(
                        k.arg == "frozen" for k in decorator.keywords
                    )
                    where = f"{path.relative_to(ROOT)}: {node.name}"
                    assert not frozen or node.name in SHARED_DEFAULTS, where


def test_an_entry_is_built_positionally_or_by_keyword_alike() -> None:
    entry = LedgerEntry(
        account_id="a", seq=1, delta=-1, balance_after=1, reason=model.EntryReason.CONSUME,
        source="request:x", bucket_grant_id="g", bucket_kind=BucketKind.GIFT, metadata={},
        occurred_at=AT, recorded_at=AT, request_id="x",
    )  # fmt: skip
    assert dataclasses.replace(entry) == entry
