"""`/docs` (Swagger UI) and `/redoc` (ReDoc) from assets served by the API itself: no CDN, so
the pages work on a machine without internet. The assets are the PyPI package fastapi-offline's
(`fastapi_offline/static/`: swagger-ui-bundle.js, swagger-ui.css, redoc.standalone.js,
favicon.png, each under its own licence, MIT / Apache-2.0), served by name from an allow-list
under `/docs/assets/`. Swagger UI's validator badge (a request to validator.swagger.io) is off.
"""

from __future__ import annotations

import functools
from importlib.resources import files
from importlib.resources.abc import Traversable

from fastapi import APIRouter, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse, Response

from services.api.problems import Problem

router = APIRouter(include_in_schema=False)
ASSETS: Traversable = files("fastapi_offline").joinpath("static")
ASSET_PATH = "/docs/assets/"
# Only these files are served: the name is looked up, never joined into a path from the request.
ASSET_TYPES = {
    "swagger-ui-bundle.js": "text/javascript; charset=utf-8",
    "swagger-ui.css": "text/css; charset=utf-8",
    "redoc.standalone.js": "text/javascript; charset=utf-8",
    "favicon.png": "image/png",
}
SWAGGER_PARAMETERS = {"validatorUrl": None, "displayOperationId": True, "tryItOutEnabled": False}
# ReDoc's attribution shows a logo from its CDN (hidden when it fails to load): served a blank
# image instead, so the page asks nothing of another origin.
REDOC_LOGO = b"https://cdn.redoc.ly/redoc/logo-mini.svg"
BLANK_IMAGE = b"data:image/svg+xml,%3Csvg xmlns=%27http://www.w3.org/2000/svg%27/%3E"
# The pages load from this origin only (the inline script is FastAPI's page template's).
PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' "
        "'unsafe-inline'; img-src 'self' data:; worker-src 'self' blob:; connect-src 'self'; "
        "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
}


def _root(request: Request) -> str:
    return str(request.scope.get("root_path", ""))


@router.get("/docs")
def swagger_ui(request: Request) -> HTMLResponse:
    root = _root(request)
    page = get_swagger_ui_html(
        openapi_url=f"{root}/openapi.json",
        title="creditledger API - Swagger UI",
        swagger_js_url=f"{root}{ASSET_PATH}swagger-ui-bundle.js",
        swagger_css_url=f"{root}{ASSET_PATH}swagger-ui.css",
        swagger_favicon_url=f"{root}{ASSET_PATH}favicon.png",
        swagger_ui_parameters=SWAGGER_PARAMETERS,
    )
    page.headers.update(PAGE_HEADERS)
    return page


@router.get("/redoc")
def redoc(request: Request) -> HTMLResponse:
    root = _root(request)
    page = get_redoc_html(
        openapi_url=f"{root}/openapi.json",
        title="creditledger API - ReDoc",
        redoc_js_url=f"{root}{ASSET_PATH}redoc.standalone.js",
        redoc_favicon_url=f"{root}{ASSET_PATH}favicon.png",
        with_google_fonts=False,
    )
    page.headers.update(PAGE_HEADERS)
    return page


@router.get(ASSET_PATH + "{name}")
def docs_asset(name: str) -> Response:
    media_type = ASSET_TYPES.get(name)
    if media_type is None:
        raise Problem(404, "not-found", "no such documentation asset")
    return Response(
        _asset_bytes(name),
        media_type=media_type,
        headers={"Cache-Control": "public, max-age=86400"},
    )


@functools.cache
def _asset_bytes(name: str) -> bytes:
    """Read once per process (the bundles are 1-1.5 MB); only names of ASSET_TYPES come here."""
    body = ASSETS.joinpath(name).read_bytes()
    if name == "redoc.standalone.js":
        body = body.replace(REDOC_LOGO, BLANK_IMAGE)
    return body
