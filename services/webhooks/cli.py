"""`creditledger webhooks`: the delivery worker alone (serving /healthz and /metrics on
CREDITLEDGER_API_PORT), for services/cli.py to wire. `creditledger serve` runs it too."""

from __future__ import annotations

import argparse
from typing import Any


def add_parser(sub: Any) -> None:
    sub.add_parser(
        "webhooks",
        help="deliver alerts to the registered webhook endpoints (signed, retried)",
        description="Reads the alerts topic in its own consumer group and POSTs each alert to "
        "every subscribed endpoint; settings: CREDITLEDGER_WEBHOOK_* (docs/webhooks.md).",
        epilog="examples:\n  creditledger webhooks",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def command(args: argparse.Namespace) -> int:
    from services import runtime
    from services.cli.serve_cmds import run_fast

    settings = runtime.resolve_settings(start_stack=True)
    run_fast(runtime.serve(settings, ("webhooks",)))
    return 0
