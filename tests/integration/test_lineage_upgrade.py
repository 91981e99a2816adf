"""Migration 0022 (refund lineage by the request's seq range): idempotency rows written before
it, with no `last_seq`, get their consumes' range from the ledger, and a refund of such a call
finds every consume it drew, as it did through the old index by source."""

from __future__ import annotations

import asyncpg
import pytest

from services.platform.postgres import migrate
from tests.messages import command, grant, usage
from tests.pipeline import Driver

pytestmark = pytest.mark.integration
ACCOUNT = "acct_lineage"
# The schema as it stood before 0022, and its mark forgotten, so that `migrate` applies it again.
BEFORE_0022 = """
CREATE INDEX ledger_entries_by_source ON ledger_entries (account_id, source);
DROP INDEX ledger_entries_refunds_by_source;
ALTER TABLE processed_requests DROP COLUMN last_seq;
DELETE FROM schema_migrations WHERE name = '0022_lineage_by_seq_range.sql';
"""
CONSUMES = """
SELECT seq, bucket_grant_id, delta FROM ledger_entries
WHERE account_id = $1 AND source = $2 ORDER BY seq
"""


async def test_calls_recorded_before_the_migration_are_refunded_by_their_draws(
    driver: Driver,
) -> None:
    # Two buckets: the gift is drawn first (its default priority), then the purchase.
    await driver.commands(grant(ACCOUNT, 5, "g-gift", bucket="gift"),
                          grant(ACCOUNT, 10, "g-paid", bucket="purchased"))  # fmt: skip
    await driver.usage(
        usage(ACCOUNT, "call-1", credits=8),
        usage(ACCOUNT, "call-2", credits=1),
        usage(ACCOUNT, "call-3", status=500, credits=1),  # refunded at once (a 5xx)
    )
    await driver.commands(command("refund", ACCOUNT, "rf-0", request_id="call-1", amount=1))
    await driver.settled()
    drawn = [tuple(r) for r in await driver.pool.fetch(CONSUMES, ACCOUNT, "request:call-1")]
    assert [(g, d) for _, g, d in drawn] == [("g-gift", -5), ("g-paid", -3)]

    await driver.pool.execute(BEFORE_0022)
    assert driver.settings.database_url is not None
    assert "0022_lineage_by_seq_range.sql" in await migrate(driver.settings.database_url)
    ranges = {
        r["request_id"]: (r["first_seq"], r["last_seq"])
        for r in await driver.pool.fetch(
            "SELECT request_id, first_seq, last_seq FROM processed_requests WHERE account_id = $1",
            ACCOUNT,
        )
    }
    assert ranges["call-1"] == (drawn[0][0], drawn[-1][0])
    assert ranges["call-2"][0] == ranges["call-2"][1] == drawn[-1][0] + 1
    assert ranges["call-3"][0] == ranges["call-3"][1] == drawn[-1][0] + 2  # its consume

    # The refund gives back what each bucket gave, newest draw first, after what rf-0 gave back
    # (a lineage it could not find would be refused: nothing refundable). call-3's lineage,
    # consumed and refunded before the migration, is found whole: nothing is left to refund.
    await driver.commands(
        command("refund", ACCOUNT, "rf-1", request_id="call-1", amount=4),
        command("refund", ACCOUNT, "rf-3", request_id="call-3", amount=1),
    )
    await driver.settled()
    refunded = await driver.pool.fetch(CONSUMES, ACCOUNT, "refund:call-1")
    assert [(r["bucket_grant_id"], r["delta"]) for r in refunded] == [
        ("g-paid", 1), ("g-paid", 2), ("g-gift", 2),
    ]  # fmt: skip
    rows = await driver.pool.fetch(
        "SELECT command_id, status FROM processed_commands WHERE account_id = $1"
        " AND command_id LIKE 'rf-%'", ACCOUNT,
    )  # fmt: skip
    statuses = {r["command_id"]: r["status"] for r in rows}
    assert statuses == {"rf-0": "applied", "rf-1": "applied", "rf-3": "rejected"}


async def test_a_writer_older_than_the_migration_fails_loudly(driver: Driver) -> None:
    # Its COPY names no last_seq: a call recorded so could not be refunded by its draws.
    with pytest.raises(asyncpg.CheckViolationError, match="processed_requests_seq_range"):
        await driver.pool.execute(
            "INSERT INTO processed_requests (account_id, request_id, payload_sha256, first_seq,"
            " recorded_at) VALUES ($1, 'old-writer', '\\x00', 1, now())",
            ACCOUNT,
        )
