"""A counting TCP proxy in front of PostgreSQL: client↔server round trips, without touching
hookcast.

:class:`PgProxy` listens on 127.0.0.1 (a free port the kernel picks), opens one upstream
connection per client connection and pipes the bytes through unchanged in both directions.
It reads the frontend (client → server) stream as it passes: the startup packet first
(int32 length + payload, no type byte; an ``SSLRequest`` or ``GSSENCRequest`` is answered
``N`` by the proxy itself and not forwarded, so the session stays plaintext and readable),
then messages of one type byte + int32 length (the length counts itself). A round trip is
a ``Sync`` (``S``, the end of an extended-protocol batch: the client waits for
``ReadyForQuery``) or a simple ``Query`` (``Q``). ``Flush`` (``H``: asyncpg's
prepare-and-describe, once per statement and connection) is counted apart for the record.

The proxy runs on an asyncio loop (uvloop when installed) in a daemon thread of the
harness, so its counters are read directly; :meth:`PgProxy.tally` is a consistent
snapshot. Use it as a context manager::

    with PgProxy(database_url) as proxy:
        serve(proxy.url)            # the same URL, host and port pointing at the proxy
        before = proxy.tally()
        ...
        trips = (proxy.tally() - before).round_trips
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

#: startup-phase request codes the proxy answers "N" itself (encryption refused)
SSL_REQUEST = 80877103
GSSENC_REQUEST = 80877104
_CHUNK = 256 * 1024


@dataclass(frozen=True)
class Tally:
    """Frontend messages counted so far (or between two snapshots)."""

    syncs: int = 0
    queries: int = 0
    flushes: int = 0
    messages: int = 0
    connections: int = 0

    @property
    def round_trips(self) -> int:
        return self.syncs + self.queries

    def __add__(self, other: Tally) -> Tally:
        return Tally(
            self.syncs + other.syncs,
            self.queries + other.queries,
            self.flushes + other.flushes,
            self.messages + other.messages,
            self.connections + other.connections,
        )

    def __sub__(self, other: Tally) -> Tally:
        return Tally(
            self.syncs - other.syncs,
            self.queries - other.queries,
            self.flushes - other.flushes,
            self.messages - other.messages,
            self.connections - other.connections,
        )


class FrontendScanner:
    """Follows the message boundaries of one client's stream, chunk by chunk.

    :meth:`feed` returns the bytes to forward to the server and the bytes to answer the
    client with directly (``N`` to an encryption request); message types are counted in
    :attr:`types` (type byte → count). The stream itself is never altered.
    """

    def __init__(self) -> None:
        self.startup = True
        self.types: dict[int, int] = {}
        self.broken = False  # an impossible length: stop counting, keep piping
        self._pending = bytearray()  # startup: the packet so far; then: a partial header
        self._skip = 0  # body bytes of the current message still to pass

    def tally(self) -> Tally:
        types = self.types
        return Tally(
            syncs=types.get(ord("S"), 0),
            queries=types.get(ord("Q"), 0),
            flushes=types.get(ord("H"), 0),
            messages=sum(types.values()),
        )

    def feed(self, data: bytes) -> tuple[bytes, bytes]:
        if not self.startup:
            self._scan(data)
            return data, b""
        self._pending += data
        reply = bytearray()
        while self.startup and len(self._pending) >= 8:
            length = int.from_bytes(self._pending[:4], "big")
            if length < 8:
                self.startup, self.broken = False, True
                break
            if len(self._pending) < length:
                break
            code = int.from_bytes(self._pending[4:8], "big")
            if length == 8 and code in (SSL_REQUEST, GSSENC_REQUEST):
                del self._pending[:8]
                reply += b"N"
                continue
            self.startup = False  # StartupMessage (or CancelRequest): typed messages follow
            out = bytes(self._pending)
            self._pending.clear()
            self._scan(out[length:])
            return out, bytes(reply)
        return b"", bytes(reply)

    def _scan(self, data: bytes) -> None:
        i, n = 0, len(data)
        while i < n and not self.broken:
            if self._skip:
                step = min(self._skip, n - i)
                self._skip -= step
                i += step
                continue
            take = min(5 - len(self._pending), n - i)
            self._pending += data[i : i + take]
            i += take
            if len(self._pending) < 5:
                return
            kind, length = self._pending[0], int.from_bytes(self._pending[1:5], "big")
            self._pending.clear()
            if length < 4:
                self.broken = True
                return
            self.types[kind] = self.types.get(kind, 0) + 1
            self._skip = length - 4


class PgProxy:
    """The proxy in a daemon thread; ``url`` is ``upstream_url`` pointed at it."""

    def __init__(self, upstream_url: str, host: str = "127.0.0.1") -> None:
        parts = urlsplit(upstream_url)
        self.upstream_url = upstream_url
        self.upstream = (parts.hostname or "127.0.0.1", parts.port or 5432)
        self.host = host
        self.port = 0
        self._lock = threading.Lock()
        self._total = Tally()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._stopping: asyncio.Event | None = None
        self._error: BaseException | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def url(self) -> str:
        parts = urlsplit(self.upstream_url)
        userinfo = parts.netloc.rpartition("@")[0]
        netloc = (userinfo + "@" if userinfo else "") + f"{self.host}:{self.port}"
        return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))

    def tally(self) -> Tally:
        with self._lock:
            return self._total

    # -- life cycle ------------------------------------------------------------------------
    def start(self) -> PgProxy:
        self._thread = threading.Thread(target=self._run, name="pgproxy", daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("pgproxy: not listening after 10 s")
        if self._error is not None:
            raise RuntimeError(f"pgproxy: could not listen: {self._error}") from self._error
        return self

    def stop(self) -> None:
        loop, stopping = self._loop, self._stopping
        if loop is not None and stopping is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop ended already
                loop.call_soon_threadsafe(stopping.set)
        if self._thread is not None:
            self._thread.join(10)
            self._thread = None

    def __enter__(self) -> PgProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _run(self) -> None:
        try:
            import uvloop

            loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
        except ImportError:  # pragma: no cover - uvloop comes with hookcast
            loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._serve())
        except BaseException as exc:  # reported to start() if it happened before listening
            self._error = exc
        finally:
            self._ready.set()
            loop.close()

    async def _serve(self) -> None:
        self._stopping = asyncio.Event()
        server = await asyncio.start_server(self._client, self.host, 0, limit=_CHUNK)
        self.port = int(server.sockets[0].getsockname()[1])
        self._ready.set()
        try:
            await self._stopping.wait()
        finally:
            server.close()
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            await server.wait_closed()

    # -- one client connection ------------------------------------------------------------------
    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.upstream, limit=_CHUNK)
        except OSError:
            self._tasks.discard(task)
            writer.close()
            return
        self._add(Tally(connections=1))
        try:
            # an error on one side (a reset) ends that pipe, which closes the other side
            await asyncio.gather(
                self._frontend(reader, up_writer, writer),
                self._pipe(up_reader, writer),
                return_exceptions=True,
            )
        finally:
            for w in (writer, up_writer):
                w.close()
            self._tasks.discard(task)

    async def _frontend(
        self,
        reader: asyncio.StreamReader,
        upstream: asyncio.StreamWriter,
        client: asyncio.StreamWriter,
    ) -> None:
        scanner, counted = FrontendScanner(), Tally()
        try:
            while data := await reader.read(_CHUNK):
                forward, reply = scanner.feed(data)
                if reply:
                    client.write(reply)
                    await client.drain()
                if forward:
                    upstream.write(forward)
                    await upstream.drain()
                now = scanner.tally()
                if now != counted:
                    self._add(now - counted)
                    counted = now
        finally:
            upstream.close()

    def _add(self, new: Tally) -> None:
        with self._lock:
            self._total += new

    @staticmethod
    async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(_CHUNK):
                writer.write(data)
                await writer.drain()
        finally:
            writer.close()
