"""services/api/http_protocol.py: a response's head and body reach the socket in one write, with
the bytes uvicorn's own protocol writes; closing, failures and flow control as before."""

from __future__ import annotations

import asyncio
import contextlib
import re
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, cast

import pytest
import uvicorn
import uvloop
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

from services.api.http_protocol import (
    WRITE_THROUGH_BYTES,
    JoinedWritesTransport,
    OneWriteHttpToolsProtocol,
)
from services.api.workers import http_config
from services.platform.settings import Settings

HEAD = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n"
BODY = b"{}"
Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


class SocketTransport:
    """Stands for the socket's transport: records what reaches it."""

    def __init__(self) -> None:
        self.events: list[tuple[str, bytes]] = []
        self.closing = False
        self.buffered_bytes = 0

    def write(self, data: bytes) -> None:
        self.events.append(("write", bytes(data)))

    def close(self) -> None:
        self.closing = True
        self.events.append(("close", b""))

    def write_eof(self) -> None:
        self.events.append(("write_eof", b""))

    def abort(self) -> None:
        self.closing = True
        self.events.append(("abort", b""))

    def is_closing(self) -> bool:
        return self.closing

    def get_write_buffer_size(self) -> int:
        return self.buffered_bytes

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 8080) if name in ("sockname", "peername") else default

    def pause_reading(self) -> None:
        self.events.append(("pause_reading", b""))

    def resume_reading(self) -> None:
        self.events.append(("resume_reading", b""))

    def writes(self) -> list[bytes]:
        return [data for kind, data in self.events if kind == "write"]


def joined_over(socket_transport: SocketTransport) -> JoinedWritesTransport:
    loop = asyncio.get_running_loop()
    return JoinedWritesTransport(cast(asyncio.Transport, socket_transport), loop)


async def one_loop_pass() -> None:
    await asyncio.sleep(0)  # the flush scheduled before it runs first


# --- the transport ---------------------------------------------------------------------------


async def test_a_head_and_body_of_one_pass_are_one_write_of_the_same_bytes() -> None:
    socket_transport = SocketTransport()
    joined = joined_over(socket_transport)
    joined.write(HEAD)
    joined.write(BODY)
    assert socket_transport.events == []
    await one_loop_pass()
    assert socket_transport.events == [("write", HEAD + BODY)]
    joined.write(HEAD)  # the next pass's writes are held again
    await one_loop_pass()
    assert socket_transport.writes() == [HEAD + BODY, HEAD]


async def test_a_body_past_the_bound_writes_through_after_what_is_held() -> None:
    socket_transport = SocketTransport()
    joined = joined_over(socket_transport)
    large_body = b"x" * WRITE_THROUGH_BYTES
    joined.write(HEAD)
    joined.write(large_body)
    assert socket_transport.writes() == [HEAD, large_body]  # at once, in order
    joined.write(BODY)
    assert joined.get_write_buffer_size() == len(BODY)  # a small write is held again
    await one_loop_pass()
    assert socket_transport.writes() == [HEAD, large_body, BODY]


async def test_writes_up_to_the_bound_are_joined() -> None:
    socket_transport = SocketTransport()
    joined = joined_over(socket_transport)
    body = b"x" * (WRITE_THROUGH_BYTES - len(HEAD))
    joined.write(HEAD)
    joined.write(body)
    assert socket_transport.events == []
    await one_loop_pass()
    assert socket_transport.writes() == [HEAD + body]


async def test_close_and_write_eof_write_what_is_held_first() -> None:
    socket_transport = SocketTransport()
    joined = joined_over(socket_transport)
    joined.write(HEAD)
    joined.write(BODY)
    joined.write_eof()
    joined.writelines([HEAD, BODY])
    joined.close()
    assert socket_transport.events == [
        ("write", HEAD + BODY),
        ("write_eof", b""),
        ("write", HEAD + BODY),
        ("close", b""),
    ]
    await one_loop_pass()
    assert len(socket_transport.events) == 4  # the pass's flush finds nothing left


async def test_abort_and_a_failed_connection_drop_what_is_held() -> None:
    aborted = SocketTransport()
    joined = joined_over(aborted)
    joined.write(HEAD)
    joined.abort()
    failed = SocketTransport()
    joined_failed = joined_over(failed)
    joined_failed.write(HEAD)
    failed.closing = True  # the transport closed itself: the peer is gone
    await one_loop_pass()
    assert aborted.events == [("abort", b"")]
    assert failed.events == []


async def test_what_is_held_counts_in_the_write_buffer_and_is_a_copy() -> None:
    socket_transport = SocketTransport()
    socket_transport.buffered_bytes = 100
    joined = joined_over(socket_transport)
    reused = bytearray(BODY)
    joined.write(reused)
    reused[:] = b"no"
    joined.write(b"")
    assert joined.get_write_buffer_size() == 100 + len(BODY)
    await one_loop_pass()
    assert socket_transport.writes() == [BODY]
    assert joined.get_write_buffer_size() == 100


async def test_everything_else_is_the_socket_transports() -> None:
    socket_transport = SocketTransport()
    joined = joined_over(socket_transport)
    joined.pause_reading()
    joined.resume_reading()
    assert socket_transport.events == [("pause_reading", b""), ("resume_reading", b"")]
    assert joined.get_extra_info("peername") == ("127.0.0.1", 8080)
    assert joined.get_extra_info("socket", "none") == "none"
    assert not joined.is_closing()


def test_every_method_of_a_transport_is_its_own_not_asyncios_unimplemented_one() -> None:
    public = [name for name in dir(asyncio.Transport) if not name.startswith("_")]
    inherited = [
        name
        for name in public
        if getattr(JoinedWritesTransport, name) is getattr(asyncio.Transport, name)
    ]
    assert public and inherited == []


# --- the protocol, fed bytes -----------------------------------------------------------------


async def small_json(scope: Scope, receive: Receive, send: Send) -> None:
    headers = [(b"content-type", b"application/json"), (b"content-length", b"2")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": BODY})


@dataclass
class Fed:
    socket_transport: SocketTransport
    protocol: HttpToolsProtocol
    state: ServerState = field(default_factory=ServerState)

    async def answered(self, request: bytes) -> list[bytes]:
        self.protocol.data_received(request)
        await asyncio.gather(*self.state.tasks)
        return self.socket_transport.writes()


def fed(
    protocol_class: type[HttpToolsProtocol],
    app: Callable[[Scope, Receive, Send], Awaitable[None]] = small_json,
) -> Fed:
    config = http_config(app, Settings())
    state = ServerState()
    loop = asyncio.get_running_loop()
    protocol = protocol_class(config=config, server_state=state, app_state={}, _loop=loop)
    socket_transport = SocketTransport()
    protocol.connection_made(cast(asyncio.Transport, socket_transport))
    return Fed(socket_transport, protocol, state)


KEEP_ALIVE = b"GET /v1/credits/balance HTTP/1.1\r\nhost: api\r\n\r\n"
CLOSE = b"GET /v1/credits/balance HTTP/1.1\r\nhost: api\r\nconnection: close\r\n\r\n"


async def test_the_protocol_writes_uvicorns_bytes_once_per_response() -> None:
    plain, one_write = fed(HttpToolsProtocol), fed(OneWriteHttpToolsProtocol)
    plain_writes = await plain.answered(KEEP_ALIVE)
    assert len(plain_writes) == 2  # what this module is for: head, then body
    assert await one_write.answered(KEEP_ALIVE) == [b"".join(plain_writes)]
    assert not one_write.socket_transport.closing
    one_write.protocol.connection_lost(None)


async def test_a_connection_close_response_is_written_then_closed() -> None:
    plain, one_write = fed(HttpToolsProtocol), fed(OneWriteHttpToolsProtocol)
    plain_writes = await plain.answered(CLOSE)
    await one_write.answered(CLOSE)
    assert one_write.socket_transport.events == [("write", b"".join(plain_writes)), ("close", b"")]


async def test_a_complete_response_leaves_before_its_pass_ends() -> None:
    writes_seen_after_the_body: list[int] = []
    socket_transports: list[SocketTransport] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await small_json(scope, receive, send)
        writes_seen_after_the_body.append(len(socket_transports[0].writes()))

    one_write = fed(OneWriteHttpToolsProtocol, app)
    socket_transports.append(one_write.socket_transport)
    await one_write.answered(KEEP_ALIVE)
    assert writes_seen_after_the_body == [1]


async def test_pause_and_resume_writing_reach_the_protocol() -> None:
    one_write = fed(OneWriteHttpToolsProtocol)
    one_write.protocol.pause_writing()  # as the socket transport calls it
    one_write.protocol.data_received(KEEP_ALIVE)
    await one_loop_pass()
    assert one_write.socket_transport.writes() == []  # uvicorn's send waits for the drain
    one_write.protocol.resume_writing()
    await asyncio.gather(*one_write.state.tasks)
    assert len(one_write.socket_transport.writes()) == 1


# --- a real uvicorn on a socket --------------------------------------------------------------


@dataclass
class Wire:
    """What reached one server's socket transports, and the flow control they asked for."""

    writes: list[bytes] = field(default_factory=list)
    pauses: int = 0
    resumes: int = 0


class RecordingTransport:
    def __init__(self, transport: asyncio.Transport, wire: Wire) -> None:
        self._transport = transport
        self._wire = wire

    def write(self, data: bytes) -> None:
        self._wire.writes.append(bytes(data))
        self._transport.write(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


def recorded(base: type[HttpToolsProtocol], wire: Wire) -> type[HttpToolsProtocol]:
    """`base` over a transport that records its writes, counting pause/resume_writing."""

    def connection_made(self: HttpToolsProtocol, transport: asyncio.Transport) -> None:
        base.connection_made(self, cast(asyncio.Transport, RecordingTransport(transport, wire)))

    def pause_writing(self: HttpToolsProtocol) -> None:
        wire.pauses += 1
        base.pause_writing(self)

    def resume_writing(self: HttpToolsProtocol) -> None:
        wire.resumes += 1
        base.resume_writing(self)

    methods = {
        "connection_made": connection_made,
        "pause_writing": pause_writing,
        "resume_writing": resume_writing,
    }
    return type(f"Recorded{base.__name__}", (base,), methods)


LARGE_BODY = bytes(range(256)) * (32 * 1024)  # 8 MiB: more than the socket buffers hold
LARGE_PART_BYTES = 64 * 1024


def served_app(proceed: asyncio.Event) -> Callable[[Scope, Receive, Send], Awaitable[None]]:
    """Small answers, a streamed answer waiting for `proceed` between its parts, a large one."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["path"] == "/stream":
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"first", "more_body": True})
            await proceed.wait()
            await send({"type": "http.response.body", "body": b"second"})
        elif scope["path"] == "/large":
            await send_large(send)
        else:
            await small_json(scope, receive, send)

    return app


async def send_large(send: Send) -> None:
    length = str(len(LARGE_BODY)).encode()
    headers = [(b"content-length", length)]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    for start in range(0, len(LARGE_BODY), LARGE_PART_BYTES):
        part = LARGE_BODY[start : start + LARGE_PART_BYTES]
        more = start + LARGE_PART_BYTES < len(LARGE_BODY)
        await send({"type": "http.response.body", "body": part, "more_body": more})


class _SignalFreeServer(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@contextlib.asynccontextmanager
async def serving(
    protocol_class: type[HttpToolsProtocol], proceed: asyncio.Event | None = None
) -> AsyncIterator[tuple[str, int]]:
    app = served_app(proceed or asyncio.Event())
    config = http_config(app, Settings(api_host="127.0.0.1", api_port=0))
    config.http = protocol_class
    server = _SignalFreeServer(config)
    listening = socket.create_server(("127.0.0.1", 0))
    address = listening.getsockname()
    serve = asyncio.create_task(server.serve(sockets=[listening]))
    try:
        while not server.started:  # noqa: ASYNC110 - uvicorn signals its start with a flag
            await asyncio.sleep(0.01)
        yield address
    except BaseException:
        server.force_exit = True  # a failed test's app may never finish: no graceful wait
        raise
    finally:
        server.should_exit = True
        await serve
        listening.close()


async def read_response(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    length = int(re.search(rb"content-length: (\d+)", head).group(1))  # type: ignore[union-attr]
    return head + await reader.readexactly(length)


def without_dates(wire_bytes: bytes) -> bytes:
    return re.sub(rb"date: [^\r]*\r\n", b"date: -\r\n", wire_bytes)


async def small_answers(address: tuple[str, int]) -> bytes:
    """Two answers on a kept-alive connection, then one with `connection: close`."""
    reader, writer = await asyncio.open_connection(*address)
    answers = []
    for _ in range(2):
        writer.write(KEEP_ALIVE)
        answers.append(await read_response(reader))
    writer.write(CLOSE)
    answers.append(await reader.read())  # to the server's close
    writer.close()
    return b"".join(answers)


LOOPS = pytest.mark.parametrize(
    "new_loop", [asyncio.new_event_loop, uvloop.new_event_loop], ids=["asyncio", "uvloop"]
)


def run(new_loop: Callable[[], asyncio.AbstractEventLoop], work: Awaitable[None]) -> None:
    with asyncio.Runner(loop_factory=new_loop) as runner:
        runner.run(asyncio.wait_for(work, timeout=30))


@LOOPS
def test_a_served_response_is_one_write_of_the_same_bytes(
    new_loop: Callable[[], asyncio.AbstractEventLoop],
) -> None:
    async def both() -> None:
        plain, one_write = Wire(), Wire()
        async with serving(recorded(HttpToolsProtocol, plain)) as address:
            plain_bytes = await small_answers(address)
        async with serving(recorded(OneWriteHttpToolsProtocol, one_write)) as address:
            one_write_bytes = await small_answers(address)
        assert len(plain.writes) == 6
        assert len(one_write.writes) == 3  # three answers, one write each
        assert without_dates(one_write_bytes) == without_dates(plain_bytes)
        assert b"".join(one_write.writes) == one_write_bytes
        assert one_write_bytes.count(b"HTTP/1.1 200 OK") == 3

    run(new_loop, both())


@LOOPS
def test_a_streamed_part_leaves_at_the_end_of_its_pass(
    new_loop: Callable[[], asyncio.AbstractEventLoop],
) -> None:
    async def stream() -> None:
        wire, proceed = Wire(), asyncio.Event()
        async with serving(recorded(OneWriteHttpToolsProtocol, wire), proceed) as address:
            reader, writer = await asyncio.open_connection(*address)
            writer.write(b"GET /stream HTTP/1.1\r\nhost: api\r\n\r\n")
            head = await reader.readuntil(b"\r\n\r\n")
            assert b"transfer-encoding: chunked" in head
            assert await reader.readuntil(b"first\r\n") == b"5\r\nfirst\r\n"
            assert len(wire.writes) == 1  # the head and the first part, joined
            proceed.set()
            assert await reader.readuntil(b"0\r\n\r\n") == b"6\r\nsecond\r\n0\r\n\r\n"
            writer.close()

    run(new_loop, stream())


@LOOPS
def test_a_large_answer_pauses_and_resumes_writing_and_arrives_whole(
    new_loop: Callable[[], asyncio.AbstractEventLoop],
) -> None:
    async def large() -> None:
        wire = Wire()
        async with serving(recorded(OneWriteHttpToolsProtocol, wire)) as address:
            client = socket.socket()
            client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            client.setblocking(False)
            await asyncio.get_running_loop().sock_connect(client, address)
            reader, writer = await asyncio.open_connection(sock=client)
            writer.write(b"GET /large HTTP/1.1\r\nhost: api\r\n\r\n")
            while not wire.pauses:  # noqa: ASYNC110 - the unread answer fills the buffers
                await asyncio.sleep(0.01)
            answer = await read_response(reader)
            writer.close()
        assert answer.endswith(b"\r\n\r\n" + LARGE_BODY)
        assert wire.resumes >= 1
        assert b"".join(wire.writes) == answer

    run(new_loop, large())
