"""Unknown query parameters answer 400, as Stripe does: a misspelt filter (`type=debit`,
`credit_id`, `/v1/usage?period`) must not return unfiltered data as if it had applied.

`refuse_unknown_query` is an app-wide dependency (`FastAPI(dependencies=...)`), so it runs on
every route of every router included, those added later too, before the route's own
dependencies (authentication included: the request is malformed whoever sends it). It compares
the request's query parameters with those the route declares (its own and its dependencies',
by their wire names: `from`, not `from_`), and refuses, naming them:
- names the route does not declare: 400 `unknown-parameter`, `parameters` [names];
- a single-valued parameter given twice (FastAPI would silently take the last one): 400
  `repeated-parameter`, `parameters` [names].

Exempt: paths a person opens in a browser from a link (`EXEMPT_PREFIXES`: the dashboard page,
whose links may carry parameters for its script, not for the server).
fastreads.py answers only well-formed balance/check requests itself; anything else (an unknown
parameter included) falls through to the routes, and so to this rule.
"""

from __future__ import annotations

import types
import typing
from dataclasses import dataclass
from typing import Any

from fastapi import Request
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute

from services.api.problems import Problem

EXEMPT_PREFIXES = ("/dashboard",)
SEQUENCE_TYPES = (list, set, frozenset, tuple)


@dataclass(frozen=True, slots=True)
class DeclaredQuery:
    names: frozenset[str]
    single_valued: frozenset[str]


# Kept on the route object itself (routes are unhashable; apps come and go in tests, so an
# id could be reused).
_ATTRIBUTE = "_creditledger_declared_query"


async def refuse_unknown_query(request: Request) -> None:
    """400 problem+json naming unknown or repeated single-valued query parameters."""
    if not request.url.query:
        return
    route = request.scope.get("route")
    if not isinstance(route, APIRoute) or route.path.startswith(EXEMPT_PREFIXES):
        return
    declared = declared_query(route)
    params = request.query_params
    unknown = sorted({name for name in params if name not in declared.names})
    if unknown:
        raise Problem(
            400, "unknown-parameter",
            f"unknown query parameter(s): {', '.join(unknown)}; this operation takes "
            f"{', '.join(sorted(declared.names)) or 'none'}",
            extra={"parameters": unknown},
        )  # fmt: skip
    repeated = sorted({name for name in declared.single_valued if len(params.getlist(name)) > 1})
    if repeated:
        raise Problem(
            400, "repeated-parameter",
            f"query parameter(s) given more than once: {', '.join(repeated)}",
            extra={"parameters": repeated},
        )  # fmt: skip


def declared_query(route: APIRoute) -> DeclaredQuery:
    """The route's query parameters by wire name, computed once per route."""
    found: DeclaredQuery | None = getattr(route, _ATTRIBUTE, None)
    if found is None:
        names: set[str] = set()
        single: set[str] = set()
        for field in _query_fields(route.dependant):
            names.add(field.alias)
            if not _is_sequence(field.field_info.annotation):
                single.add(field.alias)
        found = DeclaredQuery(frozenset(names), frozenset(single))
        setattr(route, _ATTRIBUTE, found)
    return found


def _query_fields(dependant: Dependant) -> list[Any]:
    fields = list(dependant.query_params)
    for sub in dependant.dependencies:
        fields.extend(_query_fields(sub))
    return fields


def _is_sequence(annotation: Any) -> bool:
    """list[str], list[str] | None, tuple[...] and the like take a parameter many times."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        return any(_is_sequence(arg) for arg in typing.get_args(annotation))
    if origin is typing.Annotated:
        return _is_sequence(typing.get_args(annotation)[0])
    return (origin or annotation) in SEQUENCE_TYPES
