"""`GET /problems/<slug>`: what each problem `type` means, so every `type` an error answers
resolves to a page (problems.py: `type` is `/problems/<slug>`, the registry `PROBLEM_TYPES`).
`GET /problems` lists them all. Plain HTML, no script, made from the registry alone."""

from __future__ import annotations

from html import escape

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

from services.api.problems import PROBLEM_TYPES, Problem, ProblemType, problem_responses

router = APIRouter(tags=["operations"])
HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "public, max-age=3600",
}
STYLE = "body{font-family:system-ui,sans-serif;max-width:46em;margin:2em auto;padding:0 1em}"
HTML = {"text/html": {"schema": {"type": "string"}}}


def _page(title: str, body: str) -> HTMLResponse:
    document = (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{escape(title)}'
        f"</title><style>{STYLE}</style></head><body>{body}</body></html>"
    )
    return HTMLResponse(document, headers=HEADERS)


def _section(slug: str, kind: ProblemType) -> str:
    return (
        f'<h1 id="{escape(slug)}">{escape(slug)}</h1><p>HTTP status <b>{kind.status}</b>, '
        f"<code>type: /problems/{escape(slug)}</code></p><p>{escape(kind.summary)}</p>"
        f"<p><b>What to do:</b> {escape(kind.what_to_do)}</p>"
    )


@router.get(
    "/problems",
    response_class=HTMLResponse,
    operation_id="listProblemTypes",
    summary="Every problem type the API answers",
    responses={200: {"description": "an HTML page", "content": HTML}},
)
def list_problem_types() -> HTMLResponse:
    items = "".join(
        f'<li><a href="/problems/{escape(slug)}">{escape(slug)}</a> ({kind.status}): '
        f"{escape(kind.summary)}</li>"
        for slug, kind in PROBLEM_TYPES.items()
    )
    return _page("creditledger problem types", f"<h1>Problem types</h1><ul>{items}</ul>")


@router.get(
    "/problems/{slug}",
    response_class=HTMLResponse,
    operation_id="getProblemType",
    summary="What one problem type means",
    responses={200: {"description": "an HTML page", "content": HTML}, **problem_responses(404)},
)
def get_problem_type(slug: str) -> HTMLResponse:
    kind = PROBLEM_TYPES.get(slug)
    if kind is None:
        raise Problem(404, "not-found", "no such problem type (see /problems)")
    back = '<p><a href="/problems">All problem types</a></p>'
    return _page(f"creditledger problem: {slug}", _section(slug, kind) + back)
