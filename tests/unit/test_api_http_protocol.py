"""The API's HTTP protocol (services/api/http_protocol.py): a response's head and body in one
write, nothing reordered or lost; and uvicorn as the API runs it (`http_config`) over it."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from typing import Any

import uvicorn
from starlette.types import Receive, Scope, Send

from services.api.http_protocol import HeadHoldingTransport, HttpProtocol
from services.api.workers import http_config
from services.platform.settings import Settings

HEAD = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n"


class Recorded:
    """A transport that records its calls."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, bytes]] = []
        self.closing = False

    def write(self, data: bytes) -> None:
        self.calls.append(("write", bytes(data)))

    def close(self) -> None:
        self.closing = True
        self.calls.append(("close", b""))

    def abort(self) -> None:
        self.closing = True
        self.calls.append(("abort", b""))

    def is_closing(self) -> bool:
        return self.closing

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 1) if name == "peername" else default


def holding() -> tuple[HeadHoldingTransport, Recorded]:
    real = Recorded()
    transport: Any = real
    return HeadHoldingTransport(transport, asyncio.get_running_loop()), real


async def test_a_head_goes_out_with_its_body_in_one_write() -> None:
    transport, real = holding()
    transport.write(HEAD)
    assert real.calls == []
    transport.write(b"ok")
    assert real.calls == [("write", HEAD + b"ok")]
    transport.write(b"more")  # not a head: at once
    assert real.calls[-1] == ("write", b"more")
    await asyncio.sleep(0)
    assert len(real.calls) == 2  # the pass's release found nothing held


async def test_a_head_without_a_body_yet_goes_out_at_the_end_of_the_pass() -> None:
    transport, real = holding()
    transport.write(HEAD)
    await asyncio.sleep(0)
    assert real.calls == [("write", HEAD)]
    transport.write(b"ok")
    assert real.calls == [("write", HEAD), ("write", b"ok")]


async def test_close_sends_what_is_held_first_and_abort_drops_it() -> None:
    transport, real = holding()
    transport.write(HEAD)
    transport.close()
    assert real.calls == [("write", HEAD), ("close", b"")]
    transport, real = holding()
    transport.write(HEAD)
    transport.abort()
    await asyncio.sleep(0)
    assert real.calls == [("abort", b"")]
    assert transport.get_extra_info("peername") == ("127.0.0.1", 1)  # the rest: the real one's


async def test_a_head_for_a_peer_that_left_is_not_written() -> None:
    transport, real = holding()
    transport.write(HEAD)
    real.closing = True
    await asyncio.sleep(0)
    assert real.calls == []


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    """`/stream` sends its head, then its body in two parts later; anything else at once."""
    assert scope["type"] == "http"
    if scope["path"] == "/stream":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await asyncio.sleep(0.05)
        await send({"type": "http.response.body", "body": b"part1", "more_body": True})
        await asyncio.sleep(0.05)
        await send({"type": "http.response.body", "body": b"part2"})
        return
    body = scope["path"].encode()
    headers = [(b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


@contextlib.asynccontextmanager
async def serving() -> AsyncIterator[int]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = http_config(app, Settings(api_host="127.0.0.1", api_port=port))
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    try:
        while not server.started:
            assert not task.done(), "the server did not start"
            await asyncio.sleep(0.01)
        yield port
    finally:
        server.should_exit = True
        await task


async def read_until(reader: asyncio.StreamReader, marker: bytes, count: int) -> bytes:
    data = b""
    async with asyncio.timeout(10):
        while data.count(marker) < count:
            chunk = await reader.read(65536)
            assert chunk, f"connection closed after {data!r}"
            data += chunk
    return data


async def test_the_api_server_answers_pipelined_and_streamed_requests_whole() -> None:
    assert http_config(app, Settings()).http is HttpProtocol
    async with serving() as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        paths = [f"/r{n}" for n in range(20)]
        writer.write(b"".join(f"GET {p} HTTP/1.1\r\nhost: t\r\n\r\n".encode() for p in paths))
        data = await read_until(reader, b"HTTP/1.1 200 OK", len(paths))
        bodies = [part.rsplit(b"\r\n\r\n", 1)[1] for part in data.split(b"HTTP/1.1 200 OK")[1:]]
        assert bodies == [p.encode() for p in paths]  # each whole, in order
        writer.write(b"GET /stream HTTP/1.1\r\nhost: t\r\n\r\n")
        streamed = await read_until(reader, b"0\r\n\r\n", 1)
        assert streamed.startswith(b"HTTP/1.1 200 OK") and b"part1" in streamed
        assert streamed.index(b"part1") < streamed.index(b"part2")
        writer.close()
        await writer.wait_closed()
