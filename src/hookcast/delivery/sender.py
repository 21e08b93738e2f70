"""The only outbound HTTP in hookcast: a small HTTP/1.1 client built for webhooks.

Why not aiohttp's client: measured on the target machine, its generic machinery costs
about 130 µs of CPU per POST, most of the delivery path (see docs/benchmarks.md). A
webhook POST needs little: one request line, our headers, a body, a status line back and
a capped read. This client keeps idle keep-alive connections per origin and:

- puts one deadline on each attempt (connect, headers, body and a slow drip all count),
- never follows redirects (a 3xx is just a status),
- reads at most ``read_bytes`` of the response (then drops the connection),
- resolves the host itself and connects to an address the SSRF guard accepts, so a name
  that resolves to a private address, or changes between check and connect, is refused
  at the address actually used.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import socket
import ssl
import time
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from hookcast.domain.netpolicy import IPNetwork, refusal

_MAX_HEADERS_KEPT = 50
_MAX_HEADER_VALUE = 1024
_MAX_HEAD_BYTES = 64 * 1024
_IDLE_TTL_S = 30.0
_MAX_IDLE_PER_ORIGIN = 256


@dataclass(frozen=True, slots=True)
class SendResult:
    status: int | None  # None when no response arrived
    headers: dict[str, str]
    body_excerpt: str
    error: str
    ip_address: str
    started_us: int
    ended_us: int


class BlockedError(Exception):
    """The SSRF guard refused every address of the host."""


@dataclass(frozen=True, slots=True)
class _Target:
    scheme: str
    host: str
    port: int
    path: bytes
    host_header: bytes

    @property
    def origin(self) -> tuple[str, str, int]:
        return (self.scheme, self.host, self.port)


@functools.lru_cache(maxsize=65_536)
def _target(url: str) -> _Target:
    parts = urlsplit(url)
    host = parts.hostname or ""
    scheme = parts.scheme
    default = 443 if scheme == "https" else 80
    port = parts.port or default
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    host_header = host if port == default else f"{host}:{port}"
    if ":" in host and not host.startswith("["):  # an IPv6 literal
        host_header = f"[{host}]" if port == default else f"[{host}]:{port}"
    return _Target(scheme, host, port, path.encode(), host_header.encode("idna"))


class _Conn:
    __slots__ = ("idle_since", "ip", "reader", "writer")

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, ip: str):
        self.reader, self.writer, self.ip = reader, writer, ip
        self.idle_since = 0.0

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.writer.close()


class _ResponseError(Exception):
    pass


class Sender:
    def __init__(
        self,
        *,
        read_bytes: int,
        capture_bytes: int,
        allowed_networks: Sequence[IPNetwork] = (),
        guard: bool = True,
    ) -> None:
        self._read_bytes = read_bytes
        self._capture_bytes = capture_bytes
        self._allowed = tuple(allowed_networks)
        self._guard = guard
        self._idle: dict[tuple[str, str, int], list[_Conn]] = {}
        self._ssl = ssl.create_default_context()

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        for conns in self._idle.values():
            for conn in conns:
                conn.close()
        self._idle.clear()

    async def send(
        self, url: str, body: bytes, headers: dict[str, str], timeout_s: float
    ) -> SendResult:
        started = time.time_ns() // 1000
        target = _target(url)
        conn: _Conn | None = None
        try:
            async with asyncio.timeout(timeout_s):
                conn, reused = await self._acquire(target)
                request = _encode_request(target, body, headers)
                try:
                    status, resp_headers, raw, keep = await self._exchange(conn, request)
                except (ConnectionError, asyncio.IncompleteReadError):
                    if not reused:
                        raise
                    # an idle keep-alive connection the receiver had already closed: the
                    # request never reached it, so one fresh connection is safe
                    conn.close()
                    conn, _ = await self._acquire(target, fresh=True)
                    status, resp_headers, raw, keep = await self._exchange(conn, request)
            ip = conn.ip
            self._release(target, conn, keep)
            conn = None
            return SendResult(
                status,
                resp_headers,
                raw[: self._capture_bytes].decode("utf-8", "replace"),
                "",
                ip,
                started,
                time.time_ns() // 1000,
            )
        except TimeoutError:
            error = f"timeout: no complete response within {timeout_s:g}s"
        except BlockedError as exc:
            error = f"blocked by the SSRF guard: {exc}"
        except _ResponseError as exc:
            error = f"bad response: {exc}"
        except (OSError, asyncio.IncompleteReadError, ssl.SSLError) as exc:
            error = f"{type(exc).__name__}: {exc}"
        ip = conn.ip if conn is not None else ""
        if conn is not None:
            conn.close()
        return SendResult(None, {}, "", error, ip, started, time.time_ns() // 1000)

    # ------------------------------------------------------------ connections

    async def _acquire(self, target: _Target, *, fresh: bool = False) -> tuple[_Conn, bool]:
        if not fresh:
            pool = self._idle.get(target.origin)
            now = time.monotonic()
            while pool:
                conn = pool.pop()
                if now - conn.idle_since < _IDLE_TTL_S and not conn.reader.at_eof():
                    return conn, True
                conn.close()
        return await self._connect(target), False

    async def _connect(self, target: _Target) -> _Conn:
        loop = asyncio.get_running_loop()
        infos = await loop.getaddrinfo(
            target.host, target.port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
        )
        reasons = []
        for family, _, _, _, sockaddr in infos:
            ip = str(sockaddr[0])
            why = refusal(ip, self._allowed) if self._guard else None
            if why is not None:
                reasons.append(why)
                continue
            try:
                reader, writer = await asyncio.open_connection(
                    ip,
                    target.port,
                    family=family,
                    ssl=self._ssl if target.scheme == "https" else None,
                    server_hostname=target.host if target.scheme == "https" else None,
                )
            except OSError as exc:
                reasons.append(f"{ip}: {exc}")
                continue
            return _Conn(reader, writer, ip)
        if reasons and all("is " in r or "embeds" in r for r in reasons):
            raise BlockedError(
                "; ".join(reasons) + " (HOOKCAST_ALLOWED_NETWORKS lists networks to allow)"
            )
        raise ConnectionError("; ".join(reasons) or f"{target.host} did not resolve")

    def _release(self, target: _Target, conn: _Conn, keep: bool) -> None:
        pool = self._idle.setdefault(target.origin, [])
        if keep and len(pool) < _MAX_IDLE_PER_ORIGIN:
            conn.idle_since = time.monotonic()
            pool.append(conn)
        else:
            conn.close()

    # ------------------------------------------------------------ one exchange

    async def _exchange(
        self, conn: _Conn, request: bytes
    ) -> tuple[int, dict[str, str], bytes, bool]:
        conn.writer.write(request)
        await conn.writer.drain()
        try:
            head = await conn.reader.readuntil(b"\r\n\r\n")
        except asyncio.LimitOverrunError as exc:
            raise _ResponseError("response headers too large") from exc
        status, version, headers = _parse_head(head)
        raw, complete = await self._read_body(conn.reader, headers)
        keep = (
            complete and version == b"HTTP/1.1" and headers.get("connection", "").lower() != "close"
        )
        return status, _kept(headers), raw, keep

    async def _read_body(
        self, reader: asyncio.StreamReader, headers: dict[str, str]
    ) -> tuple[bytes, bool]:
        """The body up to the read cap, and whether it was read to its end (so the
        connection can be reused)."""
        cap = self._read_bytes
        if headers.get("transfer-encoding", "").lower().endswith("chunked"):
            return await _read_chunked(reader, cap)
        length_text = headers.get("content-length")
        if length_text is not None:
            try:
                length = int(length_text)
            except ValueError as exc:
                raise _ResponseError("bad Content-Length") from exc
            data = await reader.readexactly(min(length, cap))
            return data, length <= cap
        chunks: list[bytes] = []
        got = 0
        while got < cap:
            chunk = await reader.read(cap - got)
            if not chunk:
                break
            chunks.append(chunk)
            got += len(chunk)
        return b"".join(chunks), False


def _encode_request(target: _Target, body: bytes, headers: dict[str, str]) -> bytes:
    lines = [
        b"POST ",
        target.path,
        b" HTTP/1.1\r\nHost: ",
        target.host_header,
        b"\r\nContent-Length: ",
        str(len(body)).encode(),
        b"\r\n",
    ]
    for name, value in headers.items():
        lines.append(f"{name}: {value}\r\n".encode("latin-1", "replace"))
    lines.append(b"\r\n")
    lines.append(body)
    return b"".join(lines)


def _parse_head(head: bytes) -> tuple[int, bytes, dict[str, str]]:
    lines = head.split(b"\r\n")
    parts = lines[0].split(b" ", 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/"):
        raise _ResponseError(f"not an HTTP response: {lines[0][:60]!r}")
    try:
        status = int(parts[1])
    except ValueError as exc:
        raise _ResponseError(f"bad status line: {lines[0][:60]!r}") from exc
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if not line:
            continue
        name, sep, value = line.partition(b":")
        if not sep:
            raise _ResponseError(f"bad header line: {line[:60]!r}")
        key = name.strip().decode("latin-1").lower()
        text = value.strip().decode("latin-1")
        headers[key] = f"{headers[key]}, {text}" if key in headers else text
    return status, parts[0], headers


async def _read_chunked(reader: asyncio.StreamReader, cap: int) -> tuple[bytes, bool]:
    chunks: list[bytes] = []
    got = 0
    while True:
        size_line = await reader.readuntil(b"\r\n")
        try:
            size = int(size_line.split(b";", 1)[0].strip(), 16)
        except ValueError as exc:
            raise _ResponseError("bad chunk size") from exc
        if size == 0:
            await _skip_trailers(reader)
            return b"".join(chunks), True
        if got + size > cap:
            chunks.append(await reader.readexactly(cap - got))
            return b"".join(chunks), False
        chunks.append(await reader.readexactly(size))
        got += size
        await reader.readexactly(2)


async def _skip_trailers(reader: asyncio.StreamReader) -> None:
    while True:
        line = await reader.readuntil(b"\r\n")
        if line == b"\r\n":
            return


def _kept(headers: dict[str, str]) -> dict[str, str]:
    """Response headers worth recording on the attempt (bounded)."""
    out: dict[str, str] = {}
    for name, value in headers.items():
        if len(out) >= _MAX_HEADERS_KEPT:
            break
        out["-".join(p.capitalize() for p in name.split("-"))] = value[:_MAX_HEADER_VALUE]
    return out
