"""A small metered service: `CreditsMiddleware` around a FastAPI app, configured from env.

    python -m services.producer.example_service --port 8090

`POST /v1/scanner/scan` costs 1, `POST /v1/scanner/deep-scan` costs 5 (answers 500 when
the body says `{"fail": true}`, 400 when it is not JSON), `GET /v1/status` is free. The
caller's account comes from the `x-account-id` header. Environment:
CREDITLEDGER_KAFKA_BOOTSTRAP, CREDITLEDGER_USAGE_TOPIC,
EXAMPLE_CREDITS_API (the read API's base URL), EXAMPLE_API_KEYS (JSON {account: key}),
EXAMPLE_LOCAL_VIEW_TTL_S (default 2).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from services.producer.middleware import CreditsMiddleware, HttpBalanceCheck, Scope
from services.producer.publisher import DEFAULT_TOPIC, UsagePublisher

PRICES = {"POST /v1/scanner/scan": 1, "POST /v1/scanner/deep-scan": 5}


def account_from_header(scope: Scope) -> str | None:
    for name, value in scope.get("headers", []):
        if name == b"x-account-id":
            return str(value.decode("latin-1")) or None
    return None


def scanner_app() -> FastAPI:
    app = FastAPI(title="scanner (example)")

    @app.post("/v1/scanner/scan")
    async def scan() -> dict[str, Any]:
        return {"result": "clean"}

    @app.post("/v1/scanner/deep-scan")
    async def deep_scan(request: Request) -> JSONResponse:
        body = await request.body()
        try:
            payload = json.loads(body) if body else {}
        except ValueError:
            return JSONResponse({"error": "body is not JSON"}, status_code=400)
        if isinstance(payload, dict) and payload.get("fail") is True:
            return JSONResponse({"error": "scanner crashed"}, status_code=500)
        return JSONResponse({"result": "clean", "depth": "deep"})

    @app.get("/v1/status")
    async def status() -> dict[str, str]:
        return {"status": "ok"}

    return app


def build_app(
    kafka_bootstrap: str,
    usage_topic: str,
    credits_api: str,
    api_keys: Mapping[str, str],
    local_view_ttl_s: float = 2.0,
) -> CreditsMiddleware:
    """The metered app; its lifespan starts the publisher and drains it on shutdown."""
    publisher = UsagePublisher(kafka_bootstrap, usage_topic, max_in_flight=1000)
    check = HttpBalanceCheck(credits_api, dict(api_keys))
    inner = scanner_app()

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        async with check, publisher:
            yield
            await metered.drain()  # every usage event handed over before the flush

    inner.router.lifespan_context = lifespan
    metered = CreditsMiddleware(
        inner,
        prices=PRICES,
        account_of=account_from_header,
        check=check,
        publisher=publisher,
        local_view_ttl_s=local_view_ttl_s,
    )
    return metered


def app_from_env(env: Mapping[str, str] = os.environ) -> CreditsMiddleware:
    return build_app(
        kafka_bootstrap=env["CREDITLEDGER_KAFKA_BOOTSTRAP"],
        usage_topic=env.get("CREDITLEDGER_USAGE_TOPIC", DEFAULT_TOPIC),
        credits_api=env.get("EXAMPLE_CREDITS_API", "http://127.0.0.1:8080"),
        api_keys=json.loads(env.get("EXAMPLE_API_KEYS", "{}")),
        local_view_ttl_s=float(env.get("EXAMPLE_LOCAL_VIEW_TTL_S", "2.0")),
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8090)
    args = parser.parse_args(argv)
    config = uvicorn.Config(app_from_env(), host=args.host, port=args.port, lifespan="on")
    asyncio.run(_serve(_Server(config)))


class _Server(uvicorn.Server):
    """Exits 0 after a graceful shutdown on SIGTERM (uvicorn would re-raise the signal)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, setattr, self, "should_exit", True)
        yield


async def _serve(server: uvicorn.Server) -> None:
    await server.serve()


if __name__ == "__main__":
    main()
