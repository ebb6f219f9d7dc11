"""The router's client for its own replicas: HTTP/1.1 over kept-alive loopback connections.

Replicas are wellml's own uvicorn servers, so the client speaks only what they answer: a status
line, headers, and a body of ``content-length`` bytes (or chunked). A connection that fails
is dropped; a request whose connection failed before any answer came back is reported as
:class:`ReplicaUnavailable`, so that the router can send it to another replica.
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass

MAX_HEAD = 64 * 1024


class ReplicaUnavailable(Exception):
    """The replica could not be reached, or closed the connection before answering."""


@dataclass(frozen=True)
class UpstreamResponse:
    """A replica's answer."""

    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes

    def header(self, name: bytes) -> bytes | None:
        """The first value of a header (lower-case name)."""
        for k, v in self.headers:
            if k == name:
                return v
        return None


class _Conn:
    __slots__ = ("reader", "writer")

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    def close(self) -> None:
        try:
            self.writer.close()
        except Exception:  # pragma: no cover - closing a broken transport
            pass


class ReplicaClient:
    """Requests to one replica at ``host:port``, over a pool of idle connections."""

    def __init__(self, host: str, port: int, *, max_idle: int = 64) -> None:
        self.host = host
        self.port = port
        self.max_idle = max_idle
        self._idle: deque[_Conn] = deque()
        self._prefix = f"host: {host}:{port}\r\n".encode()

    async def _connect(self, timeout: float) -> _Conn:
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(self.host, self.port, limit=MAX_HEAD), timeout
            )
        except (TimeoutError, OSError) as exc:
            raise ReplicaUnavailable(f"cannot connect to {self.host}:{self.port}: {exc}") from None
        return _Conn(reader, writer)

    async def request(
        self,
        method: str,
        path: str,
        headers: list[tuple[bytes, bytes]],
        body: bytes = b"",
        *,
        timeout: float = 60.0,
    ) -> UpstreamResponse:
        """Send one request and read the answer.

        Raises:
            ReplicaUnavailable: no answer came back (the request may be sent elsewhere).
            asyncio.TimeoutError: the replica did not answer within ``timeout`` seconds.
        """
        head = bytearray(f"{method} {path} HTTP/1.1\r\n".encode())
        head += self._prefix
        for k, v in headers:
            head += k + b": " + v + b"\r\n"
        head += b"content-length: " + str(len(body)).encode() + b"\r\n\r\n"
        # A kept-alive connection may have been closed by the replica meanwhile (a restart):
        # such a failure before any byte of answer is retried once on a fresh connection.
        for attempt in (0, 1):
            reused = bool(self._idle) and attempt == 0
            conn = self._idle.pop() if reused else await self._connect(timeout)
            try:
                conn.writer.write(bytes(head) + body if len(body) < 65536 else bytes(head))
                if len(body) >= 65536:
                    conn.writer.write(body)
                response, keep = await asyncio.wait_for(self._read(conn), timeout)
            except (ConnectionError, asyncio.IncompleteReadError, OSError) as exc:
                conn.close()
                if reused:
                    continue
                raise ReplicaUnavailable(f"{self.host}:{self.port}: {exc!r}") from None
            except BaseException:
                conn.close()
                raise
            if keep and len(self._idle) < self.max_idle:
                self._idle.append(conn)
            else:
                conn.close()
            return response
        raise ReplicaUnavailable(f"{self.host}:{self.port}: connection lost")  # pragma: no cover

    async def _read(self, conn: _Conn) -> tuple[UpstreamResponse, bool]:
        try:
            raw = await conn.reader.readuntil(b"\r\n\r\n")
        except asyncio.LimitOverrunError:
            raise ConnectionError("response head too large") from None
        lines = raw[:-4].split(b"\r\n")
        parts = lines[0].split(b" ", 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/1."):
            raise ConnectionError(f"not an HTTP response: {lines[0][:60]!r}")
        status = int(parts[1])
        headers: list[tuple[bytes, bytes]] = []
        length = None
        chunked = False
        keep = parts[0] == b"HTTP/1.1"
        for line in lines[1:]:
            k, _, v = line.partition(b":")
            k = k.strip().lower()
            v = v.strip()
            if k == b"content-length":
                length = int(v)
            elif k == b"transfer-encoding":
                chunked = b"chunked" in v.lower()
                continue
            elif k == b"connection":
                keep = v.lower() != b"close"
                continue
            headers.append((k, v))
        if chunked:
            body = await self._chunked(conn.reader)
        elif length is not None:
            body = await conn.reader.readexactly(length) if length else b""
        else:
            body = await conn.reader.read()
            keep = False
        return UpstreamResponse(status, headers, body), keep

    @staticmethod
    async def _chunked(reader: asyncio.StreamReader) -> bytes:
        out = bytearray()
        while True:
            size_line = await reader.readuntil(b"\r\n")
            size = int(size_line.split(b";", 1)[0].strip(), 16)
            if size == 0:
                await reader.readuntil(b"\r\n")
                return bytes(out)
            out += await reader.readexactly(size)
            await reader.readexactly(2)

    def close(self) -> None:
        """Close every idle connection."""
        while self._idle:
            self._idle.pop().close()
