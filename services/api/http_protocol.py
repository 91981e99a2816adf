"""uvicorn's HTTP/1.1 protocol (httptools), writing a response's head and body in one write.

uvicorn writes the status line and headers when the app sends `http.response.start` and the
body when it sends `http.response.body`: two `write` calls, each a system call that on a local
TCP connection also runs the receiver's side (~10-20 us each; with the balance and check reads
at ~100 us a request, their largest single cost). This protocol gives uvicorn a transport that
holds a write beginning with a status line (`HTTP/1.`) and sends it with the next write: the
head and body of a response whose app sends both at once (every Starlette `Response`, the fast
reads) go out in one system call and one TCP segment.

Nothing waits long and nothing is reordered: a held head goes out with the next write or, if
the app sends its body later (a streamed response), at the end of the event loop's pass
(`call_soon`); `close`, `write_eof` and `writelines` send it first, `abort` drops it with the
rest of the transport's buffer. Everything else is the real transport's.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

STATUS_LINE_START = b"HTTP/1."


class HeadHoldingTransport:
    """A transport that holds a response head until the next write (or the loop's next pass)."""

    __slots__ = ("_held", "_loop", "_transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport, self._loop = transport, loop
        self._held: bytes | None = None

    def write(self, data: bytes | bytearray | memoryview) -> None:
        held = self._held
        if held is not None:
            self._held = None
            self._transport.write(held + data)
        elif data[:7] == STATUS_LINE_START:
            self._held = bytes(data)
            self._loop.call_soon(self._release)
        else:
            self._transport.write(data)

    def _release(self) -> None:
        held = self._held
        if held is not None:
            self._held = None
            if not self._transport.is_closing():  # the peer left: nobody to send it to
                self._transport.write(held)

    def writelines(self, chunks: Iterable[bytes | bytearray | memoryview]) -> None:
        self._release()
        self._transport.writelines(chunks)

    def write_eof(self) -> None:
        self._release()
        self._transport.write_eof()

    def close(self) -> None:
        self._release()
        self._transport.close()

    def abort(self) -> None:
        self._held = None
        self._transport.abort()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class HttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol over a `HeadHoldingTransport` (`http=` of its Config)."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        held: Any = HeadHoldingTransport(transport, self.loop)
        super().connection_made(held)
