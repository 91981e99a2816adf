"""faststream is the `docs` extra: only the AsyncAPI export imports it, lazily; the services and
the API's `/asyncapi.json` run without it (schemas/README.md)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from schemas import asyncapi
from services.platform.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


def test_the_document_names_the_settings_default_topics() -> None:
    defaults = Settings.model_construct()
    assert defaults.input_topics == (asyncapi.USAGE_TOPIC, asyncapi.COMMANDS_TOPIC)
    assert defaults.ledger_topic == asyncapi.LEDGER_TOPIC
    assert defaults.alerts_topic == asyncapi.ALERTS_TOPIC
    channels = str(asyncapi.asyncapi_document()["channels"])
    assert all(topic in channels for topic in (asyncapi.USAGE_TOPIC, asyncapi.LEDGER_TOPIC))


def test_the_served_document_is_the_generated_one() -> None:
    assert asyncapi.published_document() == asyncapi.asyncapi_document()


def test_only_the_export_imports_faststream_and_inside_a_function() -> None:
    importers = []
    for top in ("services", "projections", "schemas"):
        for path in (ROOT / top).rglob("*.py"):
            tree = ast.parse(path.read_text())
            for node in ast.walk(tree):
                names = (
                    [node.module or ""] if isinstance(node, ast.ImportFrom)
                    else [a.name for a in node.names] if isinstance(node, ast.Import) else []
                )  # fmt: skip
                if any(name.split(".")[0] == "faststream" for name in names):
                    top_level = node in tree.body
                    importers.append((str(path.relative_to(ROOT)), top_level))
    assert importers and all(p == "schemas/asyncapi.py" for p, _ in importers), importers
    assert not any(top_level for _, top_level in importers)


def test_the_services_start_without_faststream() -> None:
    code = (
        "import sys; sys.modules['faststream'] = None\n"  # None: any import of it fails
        "import services.cli, services.runtime, services.api.app, projections.runner\n"
        "from schemas.asyncapi import published_document; assert published_document()\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_the_export_names_the_extra_when_faststream_is_missing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "faststream.kafka", None)
    with pytest.raises(asyncapi.DocsExtraMissing, match=r"creditledger\[docs\]"):
        asyncapi.asyncapi_document()
