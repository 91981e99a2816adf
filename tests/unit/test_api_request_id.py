"""Request ids (services/api/request_id.py): a caller's plain id is kept, else a fresh one of
32 hex digits, drawn from the OS in batches and never repeated."""

from __future__ import annotations

import re

from services.api.request_id import _RandomIds, request_id_from

HEX_32 = re.compile(r"[0-9a-f]{32}")


def test_a_plain_id_is_kept_and_any_other_replaced() -> None:
    assert request_id_from([(b"host", b"t"), (b"x-request-id", b"req-1.a:b")]) == "req-1.a:b"
    for unsafe in (b"", b"a b", b"a" * 129, b"x\xe9"):
        assert HEX_32.fullmatch(request_id_from([(b"x-request-id", unsafe)]))
    assert HEX_32.fullmatch(request_id_from([]))


def test_fresh_ids_are_distinct_across_batches() -> None:
    ids = _RandomIds()
    made = [ids.new() for _ in range(3 * _RandomIds.BATCH + 7)]
    assert all(HEX_32.fullmatch(made_id) for made_id in made)
    assert len(set(made)) == len(made)
    assert len(set(request_id_from([]) for _ in range(1000))) == 1000
