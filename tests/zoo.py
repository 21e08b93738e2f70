"""The hostile receiver zoo: one raw TCP server that answers each path with any bytes.

Well-behaved paths (``/good/...``) answer ``200 OK`` on a keep-alive connection and record
what they received; scripted paths answer whatever status line, header block, framing and
body bytes a test asks for, from a clean 200 to two responses for one request. Both kinds
share one host and port, so the gateway's keep-alive pool mixes them, as it would when
one hostile tenant and its bystanders send to the same host.

The server parses requests itself (request line, headers, ``Content-Length`` body) and keeps
every one it read, with the raw head bytes: a request on a path nobody scripted (one
smuggled inside another's headers) shows up in :attr:`Zoo.unexpected`.
"""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from dataclasses import dataclass, field

from support import LoopThread, free_port, wait_until

OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: text/plain\r\n\r\nok"


@dataclass(frozen=True)
class Reply:
    """What the zoo does with one request."""

    raw: bytes = OK
    #: close the connection after writing ``raw``
    close: bool = False
    #: wait this long before answering
    delay_s: float = 0.0
    #: write ``raw`` in pieces of this many bytes, ``drip_s`` apart (0 = at once)
    chunk: int = 0
    drip_s: float = 0.0
    #: abort with a reset (RST) after writing ``raw``
    reset: bool = False


@dataclass
class Seen:
    path: str
    head: bytes
    headers: dict[str, str]
    body: bytes
    connection: int
    index: int  # the request's position on its connection, from 0


@dataclass
class _State:
    seen: list[Seen] = field(default_factory=list)
    scripts: dict[str, list[Reply]] = field(default_factory=dict)
    #: scripted per request index on a connection: path -> {index: reply}
    by_index: dict[str, dict[int, Reply]] = field(default_factory=dict)


class Zoo:
    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._lock = threading.Lock()
        self._state = _State()
        self._connections = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self._thread = LoopThread("zoo")
        self._server = self._thread.run(self._start())

    async def _start(self) -> asyncio.Server:
        return await asyncio.start_server(self._serve, "127.0.0.1", self.port, backlog=1024)

    def stop(self) -> None:
        """Close the server and every connection it holds (a second call does nothing)."""
        if getattr(self, "_stopped", False):
            return
        self._stopped = True

        async def close() -> None:
            self._server.close()
            tasks = list(self._tasks)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await self._server.wait_closed()

        self._thread.run(close())
        self._thread.close()

    # ------------------------------------------------------------ scripting

    def script(self, path: str, *replies: Reply) -> str:
        """Answer *path* with *replies* in turn (the last repeats); returns the full URL."""
        with self._lock:
            self._state.scripts[path] = list(replies)
        return self.url + path

    def script_by_index(self, path: str, replies: dict[int, Reply], default: Reply) -> str:
        """Answer *path* by the request's position on its connection."""
        with self._lock:
            self._state.by_index[path] = replies
            self._state.scripts[path] = [default]
        return self.url + path

    def _reply(self, path: str, index: int) -> Reply | None:
        with self._lock:
            indexed = self._state.by_index.get(path)
            if indexed is not None and index in indexed:
                return indexed[index]
            queue = self._state.scripts.get(path)
            if queue:
                return queue.pop(0) if len(queue) > 1 else queue[0]
        return Reply() if path.startswith("/good/") else None

    # ------------------------------------------------------------ what was seen

    def seen(self, prefix: str = "") -> list[Seen]:
        with self._lock:
            return [s for s in self._state.seen if s.path.startswith(prefix)]

    @property
    def unexpected(self) -> list[Seen]:
        with self._lock:
            known = set(self._state.scripts)
            return [
                s
                for s in self._state.seen
                if s.path not in known and not s.path.startswith("/good/")
            ]

    def at(self, path: str) -> list[Seen]:
        """The requests to exactly *path*."""
        with self._lock:
            return [s for s in self._state.seen if s.path == path]

    def ids(self, prefix: str) -> Counter[str]:
        """How many times each ``webhook-id`` (the delivery id) arrived under *prefix*."""
        return Counter(s.headers.get("webhook-id", "") for s in self.seen(prefix))

    def wait_for(self, prefix: str, count: int, timeout: float = 20.0) -> bool:
        return wait_until(lambda: len(self.seen(prefix)) >= count, timeout)

    # ------------------------------------------------------------ the server

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        with self._lock:
            self._connections += 1
            conn = self._connections
        index = 0
        try:
            while True:
                seen = await _read_request(reader, conn, index)
                if seen is None:
                    return
                with self._lock:
                    self._state.seen.append(seen)
                reply = self._reply(seen.path, index)
                index += 1
                if reply is None:  # a path nobody scripted: a smuggled request
                    writer.write(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
                    await writer.drain()
                    continue
                if not await _answer(writer, reply):
                    return
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            return
        finally:
            writer.close()


async def _answer(writer: asyncio.StreamWriter, reply: Reply) -> bool:
    """Write *reply*; False when the connection is to end."""
    if reply.delay_s:
        await asyncio.sleep(reply.delay_s)
    if reply.chunk:
        for i in range(0, len(reply.raw), reply.chunk):
            writer.write(reply.raw[i : i + reply.chunk])
            await writer.drain()
            await asyncio.sleep(reply.drip_s)
    else:
        writer.write(reply.raw)
        await writer.drain()
    if reply.reset:
        writer.transport.abort()
        return False
    return not reply.close


async def _read_request(reader: asyncio.StreamReader, conn: int, index: int) -> Seen | None:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError:
        return None
    lines = head[:-4].split(b"\r\n")
    parts = lines[0].split(b" ")
    path = parts[1].decode("latin-1") if len(parts) > 1 else ""
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        headers[name.strip().decode("latin-1").lower()] = value.strip().decode("latin-1")
    length = int(headers.get("content-length", "0") or 0)
    body = await reader.readexactly(length) if length > 0 else b""
    return Seen(path, head, headers, body, conn, index)
