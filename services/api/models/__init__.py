"""The API's response models: the OpenAPI document's schema of every 2xx body.

Routes return plain dicts (or a Response of their own, on the hot path); `response_model=` makes
FastAPI validate each dict against its model and write it in the model's field order, with
`response_model_exclude_unset=True` (`TYPED`), so a key a dict leaves out (a grant's `ledger`
without `include_ledgers`) stays out rather than turning into `null`. Wire names are the
contract's: camelCase for the API's own bodies (`alias_generator`), snake_case where the
contract names a record's fields so (ledger entries, the price book). `extra="allow"`: the
contract lets the API add fields, and a client must accept them.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel


class CamelModel(BaseModel):
    """A body whose fields are camelCase on the wire."""

    model_config = ConfigDict(alias_generator=to_camel, extra="allow")


class WireModel(BaseModel):
    """A body whose fields are named on the wire as in Python (snake_case records)."""

    model_config = ConfigDict(extra="allow")


TYPED: dict[str, Any] = {"response_model_exclude_unset": True}
