"""What a `grant` entry says about its grant (the ledger shape of issue 12), read one way by every
read model and, as SQL fragments, by the rebuild.

- Opening entry (names bucket B, no `activated` key): `metadata.granted` is the grant's whole
  amount (entries written before it: the delta); with `metadata.scheduled` it is not yet
  effective: delta 0, nothing spendable until its activation.
- Activation (names B, `metadata.activated`): event time reached `effective_at`; its delta is
  what becomes spendable (the amount less what it paid of an overage).
- Overage payment (`metadata.pays_overage`, no bucket): credit that settles what was owed; it
  moves the balance and `grantedTotal`, no grant's remaining.

The core writes these keys as integers; a grant's custom metadata are strings, so only an
integer counts (a custom field of the same name never reads as one of them).
"""

from __future__ import annotations

from collections.abc import Mapping

GRANTED, SCHEDULED, ACTIVATED, PAYS_OVERAGE = "granted", "scheduled", "activated", "pays_overage"

MetadataValue = str | int | None


def whole(metadata: Mapping[str, MetadataValue], key: str) -> int | None:
    """`metadata[key]` when it is an integer (never a bool), else None."""
    value = metadata.get(key)
    return value if type(value) is int else None


def is_activation(metadata: Mapping[str, MetadataValue]) -> bool:
    return whole(metadata, ACTIVATED) is not None


def scheduled_amount(metadata: Mapping[str, MetadataValue]) -> int:
    """What an opening entry leaves scheduled (0: effective at once)."""
    return whole(metadata, SCHEDULED) or 0


def granted_amount(metadata: Mapping[str, MetadataValue], delta: int) -> int:
    """An opening entry's grant amount: `metadata.granted`, else (older entries) its delta."""
    granted = whole(metadata, GRANTED)
    return delta if granted is None else granted


def whole_sql(key: str, metadata: str = "metadata") -> str:
    """SQL: `metadata ->> key` as bigint when it is a JSON integer, else NULL (as `whole`)."""
    return (
        f"CASE WHEN jsonb_typeof({metadata} -> '{key}') = 'number' "
        f"AND {metadata} ->> '{key}' ~ '^-?[0-9]+$' THEN ({metadata} ->> '{key}')::bigint END"
    )
