"""Every problem `type` resolves: each slug the API's code raises is in the registry
(problems.PROBLEM_TYPES), every `type` is `/problems/<slug>`, and `GET /problems/<slug>` serves
a page for each (404 problem+json for a slug that is not one)."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest

from services.api.app import create_app
from services.api.problems import PROBLEM_TYPES, problem_response
from services.platform.settings import Settings

API = Path(__file__).resolve().parents[2] / "services" / "api"
# `Problem(403, "key-revoked", ...)`, `problem_response(422, "invalid-request", ...)`, also
# split over lines; `_TITLES`' values are the handler's slugs for framework errors.
RAISED = re.compile(r"(?:Problem|problem_response)\(\s*\d{3},\s*\"([a-z][a-z-]*)\"")


def _raised_slugs() -> set[str]:
    found: set[str] = set()
    for source in API.rglob("*.py"):
        found |= set(RAISED.findall(source.read_text()))
    return found


def test_every_raised_slug_is_registered() -> None:
    raised = _raised_slugs()
    assert {"not-found", "invalid-request", "unknown-parameter"} <= raised  # the scan works
    missing = sorted(raised - set(PROBLEM_TYPES))
    assert not missing, f"add to problems.PROBLEM_TYPES: {missing}"


def test_type_is_the_page_of_the_slug() -> None:
    body = problem_response(404, "not-found", "no such grant").body
    assert b'"type":"/problems/not-found"' in bytes(body)


@pytest.fixture
def client() -> httpx.AsyncClient:
    unused: object = None
    app = create_app(Settings.model_construct(), unused, unused)  # type: ignore[arg-type]
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api")


async def test_every_registered_type_has_a_page(client: httpx.AsyncClient) -> None:
    async with client:
        index = await client.get("/problems")
        assert index.status_code == 200 and index.headers["content-type"].startswith("text/html")
        for slug, kind in PROBLEM_TYPES.items():
            page = await client.get(f"/problems/{slug}")
            assert page.status_code == 200, slug
            assert slug in page.text and str(kind.status) in page.text
            assert f'href="/problems/{slug}"' in index.text
        unknown = await client.get("/problems/no-such-problem")
        assert unknown.status_code == 404
        assert unknown.headers["content-type"] == "application/problem+json"
        assert unknown.json()["type"] == "/problems/not-found"
