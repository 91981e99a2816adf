"""uvicorn's httptools protocol with a response's head and body in one socket write.

uvicorn (`RequestResponseCycle.send`) writes the status line and headers, then the body, each
with its own `transport.write`: two `send()` syscalls for every one of our small JSON answers
(a quarter of the API's CPU in a py-spy profile; the second send measured at about 11 µs of
kernel CPU, 29 -> 18 µs a response under wrk). `OneWriteHttpToolsProtocol` is uvicorn's own
`HttpToolsProtocol`, handed a `JoinedWritesTransport` instead of the socket's transport; the
bytes, their order and everything uvicorn decides stay uvicorn's.

`JoinedWritesTransport` holds the writes made in one event-loop pass and writes them joined:
- when the response is complete (`on_response_complete`, called by uvicorn right after the
  body's last write), so an answer leaves as soon as it did before, in one write;
- at the end of the pass (`loop.call_soon`), for whatever is not a whole response by then: a
  streamed body's parts, a head whose body is still awaited, a `100 Continue`;
- before `close()` and `write_eof()` (uvicorn writes, then closes, for `connection: close`, a
  400 and a 500), so nothing held is lost or reordered;
- and at once, past `WRITE_THROUGH_BYTES` held: the bound on what a connection holds, and the
  size past which copying into one buffer costs more than the syscall it saves (a loopback
  measurement: joined is cheaper up to about 64 KiB, dearer at 256 KiB).
Everything else (reading, flow control, addresses, `set_protocol`) is the socket transport's:
the transport still calls the protocol's `pause_writing`/`resume_writing` itself, and
`get_write_buffer_size` counts what is held too.

Why this and not another way: uvicorn has no setting for it; its h11 protocol writes twice too,
and parses in Python; `writelines` needs both parts in one call, which uvicorn never makes; a
corked socket (TCP_CORK) still costs the two sends plus the corking's own syscalls. Joining
what one pass writes needs nothing of uvicorn but its protocol class and the `http=` argument.

A write held when the connection fails is dropped, as the socket transport drops writes to a
connection it lost: once the transport is closing (it only closes itself on a failed
connection; our own `close()` writes what is held first) a flush writes nothing.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

WRITE_THROUGH_BYTES = 64 * 1024


class JoinedWritesTransport(asyncio.Transport):
    """A transport whose writes of one event-loop pass reach the socket's in one write."""

    __slots__ = ("_flush_scheduled", "_held", "_held_bytes", "_loop", "_transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__()
        self._transport = transport
        self._loop = loop
        self._held: list[bytes] = []
        self._held_bytes = 0
        self._flush_scheduled = False

    # --- writing: held, then joined ------------------------------------------------------

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if not data:
            return
        held_bytes = self._held_bytes + len(data)
        if held_bytes > WRITE_THROUGH_BYTES:
            self.flush()
            if not self._transport.is_closing():  # a later part never goes without the earlier
                self._transport.write(data)
            return
        # Held past the caller's return, so a buffer it may reuse is copied, as a transport
        # copies what it buffers; uvicorn writes bytes.
        self._held.append(data if type(data) is bytes else bytes(data))
        self._held_bytes = held_bytes
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self._loop.call_soon(self._flush_at_end_of_pass)

    def writelines(self, list_of_data: Any) -> None:
        for data in list_of_data:
            self.write(data)

    def flush(self) -> None:
        """Write what is held, joined, unless the connection is already closing (failed)."""
        held = self._held
        if held:
            self._held = []
            self._held_bytes = 0
            transport = self._transport
            if not transport.is_closing():
                transport.write(b"".join(held))  # one part: that part, not a copy

    def _flush_at_end_of_pass(self) -> None:
        self._flush_scheduled = False
        self.flush()

    def get_write_buffer_size(self) -> int:
        return self._transport.get_write_buffer_size() + self._held_bytes

    def write_eof(self) -> None:
        self.flush()
        self._transport.write_eof()

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def abort(self) -> None:
        self._held = []
        self._held_bytes = 0
        self._transport.abort()

    # --- everything else: the socket transport's -----------------------------------------
    # Each method of asyncio.Transport, by name: a `__getattr__` would slow every attribute
    # lookup on this object (CPython does not specialise lookups on such a class), measured at
    # about 0.6 µs a response, and uvicorn uses nothing beyond this interface.

    def can_write_eof(self) -> bool:
        return self._transport.can_write_eof()

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        self._transport.set_write_buffer_limits(high, low)

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return self._transport.get_write_buffer_limits()

    def is_closing(self) -> bool:
        return self._transport.is_closing()

    def is_reading(self) -> bool:
        return self._transport.is_reading()

    def pause_reading(self) -> None:
        self._transport.pause_reading()

    def resume_reading(self) -> None:
        self._transport.resume_reading()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self._transport.get_extra_info(name, default)

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self._transport.set_protocol(protocol)

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self._transport.get_protocol()


class OneWriteHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol writing through a `JoinedWritesTransport`."""

    def connection_made(  # type: ignore[override]
        self, transport: asyncio.Transport
    ) -> None:
        self.joined_writes = JoinedWritesTransport(transport, self.loop)
        super().connection_made(self.joined_writes)

    def on_response_complete(self) -> None:
        self.joined_writes.flush()
        super().on_response_complete()
