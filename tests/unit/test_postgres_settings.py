"""The local stack and compose.yaml configure PostgreSQL alike, and durability stays on."""

from __future__ import annotations

from pathlib import Path

import yaml  # type: ignore[import-untyped]

from services.platform.stack import POSTGRES_SETTINGS, server_settings

COMPOSE = Path(__file__).resolve().parents[2] / "compose.yaml"


def _compose_settings() -> dict[str, str]:
    command = yaml.safe_load(COMPOSE.read_text())["services"]["postgres"]["command"]
    assert command[0] == "postgres"
    flags, values = command[1::2], command[2::2]
    assert set(flags) == {"-c"}, flags
    return dict(value.split("=", 1) for value in values)


def test_compose_configures_postgres_as_the_local_stack_does() -> None:
    assert _compose_settings() == POSTGRES_SETTINGS


def test_commits_stay_durable() -> None:
    assert (POSTGRES_SETTINGS["fsync"], POSTGRES_SETTINGS["synchronous_commit"]) == ("on", "on")


def test_a_preloaded_library_the_build_lacks_is_left_out(tmp_path: Path) -> None:
    """A server told to preload a module it does not have would refuse to start."""
    bindir = tmp_path / "15" / "bin"
    bindir.mkdir(parents=True)
    (tmp_path / "15" / "lib").mkdir()
    without = server_settings(bindir)
    assert "shared_preload_libraries" not in without
    assert without == {
        k: v for k, v in POSTGRES_SETTINGS.items() if k != "shared_preload_libraries"
    }
    (tmp_path / "15" / "lib" / "pg_stat_statements.so").touch()
    assert server_settings(bindir) == POSTGRES_SETTINGS
