"""The customer dashboard: one static page (plain HTML/CSS/JS, no build step) over the JSON API.

The page signs in with the customer's API key, or a sign-in link traded for one
(routes_dashboard_sessions.py), and calls the `/v1/...` endpoints itself; this router only
serves its files, read from the package (`services/api/dashboard/`), so it works from a source
tree and when installed alike. See dashboard/README.md for the panels and their endpoints.
"""

from __future__ import annotations

from importlib.resources import files
from importlib.resources.abc import Traversable

from fastapi import APIRouter
from fastapi.responses import Response

from services.api.problems import Problem, problem_responses

router = APIRouter(tags=["dashboard"])
ASSETS: Traversable = files("services.api").joinpath("dashboard")
# Only these files are served: the name is looked up, never joined into a path from the request.
STATIC_TYPES = {
    "app.js": "text/javascript; charset=utf-8",
    "style.css": "text/css; charset=utf-8",
}
SECURITY_HEADERS = {
    # Scripts and styles from this origin only; the page talks to this origin only.
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


def _asset(name: str, media_type: str) -> Response:
    body = ASSETS.joinpath(name).read_bytes()
    return Response(body, media_type=media_type, headers=SECURITY_HEADERS)


@router.get(
    "/dashboard",
    response_class=Response,
    operation_id="getDashboard",
    summary="The customer dashboard page",
    responses={
        200: {"description": "the page", "content": {"text/html": {"schema": {"type": "string"}}}}
    },
)
def dashboard_page() -> Response:
    return _asset("index.html", "text/html; charset=utf-8")


@router.get(
    "/dashboard/static/{name}",
    response_class=Response,
    operation_id="getDashboardAsset",
    summary="A script or stylesheet of the dashboard",
    responses={
        200: {"description": "a script or a stylesheet",
              "content": {media: {"schema": {"type": "string"}}
                          for media in STATIC_TYPES.values()}},
        **problem_responses(404),
    },
)  # fmt: skip
def dashboard_static(name: str) -> Response:
    media_type = STATIC_TYPES.get(name)
    if media_type is None:
        raise Problem(404, "not-found", "no such dashboard file")
    return _asset(name, media_type)
