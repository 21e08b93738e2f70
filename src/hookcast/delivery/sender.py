"""The only outbound HTTP in hookcast: a small HTTP/1.1 client built for webhooks.

Why not aiohttp's client: measured on the target machine, its generic machinery costs
about 130 µs of CPU per POST, most of the delivery path (see docs/benchmarks.md). A
webhook POST needs little: one request line, our headers, a body, a status line back and
a capped read. Responses are read by llhttp (through ``httptools``, the parser uvicorn
uses), which refuses what a receiver may send to confuse a client: a status outside
100-999, a negative or duplicated ``Content-Length``, a bad chunk size, both
``Content-Length`` and ``Transfer-Encoding``, control characters in header values.

Every attempt:

- has one deadline (connect, headers, body and a slow drip all count);
- never follows redirects (a 3xx is just a status);
- reads at most ``read_bytes`` of the body (then drops the connection);
- resolves the host itself and connects to an address the SSRF guard accepts, so a name
  that resolves to a private address, or changes between check and connect, is refused at
  the address actually used;
- is sent at most once: an idle keep-alive connection is checked before the request is
  written (closed, or with bytes nobody asked for, it is dropped), and a request that may
  have reached the receiver is never written again within the same attempt (the retry
  schedule decides, and the attempt log shows it);
- ends in a :class:`SendResult`, whatever happens: no exception leaves :meth:`Sender.send`,
  and the connection is closed unless it is known to be clean and idle.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import select
import socket
import ssl
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import cast
from urllib.parse import quote, urlsplit

import httptools

from hookcast.domain.headers import UnsafeHeaderError, encode_header_block
from hookcast.domain.netpolicy import IPNetwork, refusal
from hookcast.domain.urls import ascii_host

log = logging.getLogger("hookcast.sender")

_MAX_HEADERS_KEPT = 50
_MAX_HEADER_VALUE = 1024
_MAX_HEAD_BYTES = 64 * 1024
_MAX_RESPONSE_HEADERS = 200
_IDLE_TTL_S = 30.0
_MAX_IDLE_PER_ORIGIN = 256
#: characters a request target may hold as they are; anything else is percent-encoded
_TARGET_SAFE = "/?#[]@!$&'()*+,;=:-._~%"


@dataclass(frozen=True, slots=True)
class SendResult:
    status: int | None  # None when no complete, well-formed response arrived
    headers: dict[str, str]
    body_excerpt: str
    error: str
    ip_address: str
    started_us: int
    ended_us: int


class BlockedError(Exception):
    """The SSRF guard refused every address of the host."""


class _ResponseError(Exception):
    """The receiver's answer broke HTTP/1.1 (framing, status line, headers)."""


@dataclass(frozen=True, slots=True)
class _Target:
    scheme: str
    host: str  # ASCII (IDNA-encoded) or an IP literal
    port: int
    request_head: bytes  # "POST <target> HTTP/1.1\r\nHost: <host>\r\n"

    @property
    def origin(self) -> tuple[str, str, int]:
        return (self.scheme, self.host, self.port)


@functools.lru_cache(maxsize=65_536)
def _target(url: str) -> _Target:
    """Where *url* goes; ValueError when it cannot be sent to (bad host, port, scheme)."""
    parts = urlsplit(url)
    scheme = parts.scheme
    if scheme not in ("http", "https"):
        raise ValueError(f"unsupported scheme {scheme!r}")
    host = ascii_host(parts.hostname or "")
    default = 443 if scheme == "https" else 80
    port = parts.port or default
    path = quote(parts.path or "/", safe=_TARGET_SAFE)
    if parts.query:
        path += "?" + quote(parts.query, safe=_TARGET_SAFE)
    shown = f"[{host}]" if ":" in host else host
    host_header = shown if port == default else f"{shown}:{port}"
    head = f"POST {path} HTTP/1.1\r\nHost: {host_header}\r\n"
    return _Target(scheme, host, port, head.encode("ascii"))


def _encode_request(
    target: _Target,
    body: bytes,
    headers: Mapping[str, str],
    static: bytes = b"",
    checked: bool = False,
) -> bytes:
    return b"".join(
        (
            target.request_head,
            b"Content-Length: ",
            str(len(body)).encode(),
            b"\r\n",
            static,
            encode_header_block(headers, checked=checked),
            b"\r\n",
            body,
        )
    )


class _Connection(asyncio.Protocol):
    """One keep-alive connection to one origin, and the response being read on it."""

    def __init__(self, read_cap: int, ip: str) -> None:
        self.ip = ip
        self.idle_since = 0.0
        self.closed = False
        self._cap = read_cap
        self._transport: asyncio.Transport | None = None
        self._parser = httptools.HttpResponseParser(self)
        self._waiter: asyncio.Future[None] | None = None
        self._reset()

    def _reset(self) -> None:
        self.status = 0
        self.headers: list[tuple[bytes, bytes]] = []
        self.head_bytes = 0
        self.body: list[bytes] = []
        self.got = 0
        self.truncated = False
        self.headers_done = False
        self.message_done = False
        self.keep_alive = False
        self.error: str | None = None

    # ------------------------------------------------------------ the connection

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it
        self._transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        waiter = self._waiter
        if waiter is None or waiter.done():
            # bytes nobody asked for: the connection is not clean, never reuse it
            self.close()
            return
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._finish("the receiver switched protocols (upgrade) unasked")
        except httptools.HttpParserError as exc:
            self._finish(self.error or f"{exc}")
        else:
            if self.truncated:
                self._finish(None)

    def eof_received(self) -> bool:
        self._ended("the receiver closed the connection")
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._ended(f"connection lost: {exc}" if exc else "the receiver closed the connection")

    def _ended(self, why: str) -> None:
        self.closed = True
        waiter = self._waiter
        if waiter is None or waiter.done():
            return
        if self.headers_done and self._reads_to_close():
            self._finish(None)  # a body that ends with the connection, as HTTP/1.0 allows
        elif self.headers_done:
            self._finish(f"{why} before the response body was complete")
        else:
            self._finish(f"{why} before a complete response head")

    def _reads_to_close(self) -> bool:
        names = {n.lower() for n, _ in self.headers}
        return b"content-length" not in names and b"transfer-encoding" not in names

    def close(self) -> None:
        self.closed = True
        if self._transport is not None:
            self._transport.close()

    def abort(self) -> None:
        self.closed = True
        if self._transport is not None:
            self._transport.abort()

    def is_clean(self) -> bool:
        """Open, and nothing arrived since the last response: safe to send on. The socket
        itself is asked too, since a close may have arrived that the loop has not read."""
        if self.closed or self._transport is None or self._transport.is_closing():
            return False
        sock = self._transport.get_extra_info("socket")
        if sock is None:
            return False
        poller = select.poll()
        poller.register(sock.fileno(), select.POLLIN | select.POLLHUP | select.POLLERR)
        return not poller.poll(0)

    # ------------------------------------------------------------ one exchange

    async def exchange(self, request: bytes, deadline: float) -> None:
        """Write *request* once and wait for its response (or an error in ``self.error``),
        until the loop's clock reads *deadline* (then TimeoutError). A timer handle rather
        than ``asyncio.timeout``: this runs once per delivery."""
        assert self._transport is not None
        self._reset()
        loop = asyncio.get_running_loop()
        waiter = self._waiter = loop.create_future()
        timer = loop.call_at(deadline, _expire, waiter)
        self._transport.write(request)
        try:
            await waiter
        finally:
            timer.cancel()

    def _finish(self, error: str | None) -> None:
        if error is not None:
            self.error = error
            self.abort()
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # ------------------------------------------------------------ llhttp callbacks

    def on_message_begin(self) -> None:
        if self.message_done:  # a second response to one request: never reuse
            self.keep_alive = False

    def on_header(self, name: bytes, value: bytes) -> None:
        self.head_bytes += len(name) + len(value) + 4
        if self.head_bytes > _MAX_HEAD_BYTES or len(self.headers) >= _MAX_RESPONSE_HEADERS:
            self.error = "response headers too large"
            raise _ResponseError(self.error)
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        self.status = self._parser.get_status_code()
        self.headers_done = True

    def on_body(self, body: bytes) -> None:
        room = self._cap - self.got
        if len(body) > room:
            self.truncated = True
            body = body[:room]
        if body:
            self.body.append(body)
            self.got += len(body)

    def on_message_complete(self) -> None:
        if 100 <= self.status < 200:  # an interim response (100 Continue): the real one follows
            keep = self.message_done
            self._reset()
            self.message_done = keep
            return
        if self.message_done:
            return
        self.message_done = True
        self.keep_alive = self._parser.should_keep_alive()
        self._finish(None)

    # ------------------------------------------------------------ the result

    def reusable(self) -> bool:
        return self.message_done and self.keep_alive and not self.truncated and not self.closed

    def response_headers(self) -> dict[str, str]:
        """The response's headers worth recording on the attempt, as the receiver wrote
        their names (a repeated one joined with commas), bounded in number and size."""
        out: dict[str, str] = {}
        for raw_name, raw_value in self.headers:
            name = raw_name.decode("latin-1")
            value = raw_value.decode("latin-1").strip()[:_MAX_HEADER_VALUE]
            if name in out:
                out[name] = f"{out[name]}, {value}"[:_MAX_HEADER_VALUE]
            elif len(out) < _MAX_HEADERS_KEPT:
                out[name] = value
        return out


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
        self._idle: dict[tuple[str, str, int], list[_Connection]] = {}
        self._ssl = ssl.create_default_context()

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        for conns in self._idle.values():
            for conn in conns:
                conn.close()
        self._idle.clear()

    async def send(
        self,
        url: str,
        body: bytes,
        headers: Mapping[str, str],
        timeout_s: float,
        *,
        static: bytes = b"",
        checked: bool = False,
    ) -> SendResult:
        """One attempt: never raises (but on cancellation), never writes the request twice.
        *static*: header lines already encoded (by :func:`encode_header_block`), sent before
        *headers*; *checked*: every value of *headers* that came from outside was checked
        (:func:`hookcast.domain.headers.check_wire`) when they were built."""
        started = time.time_ns() // 1000
        conn: _Connection | None = None
        try:
            target = _target(url)
            request = _encode_request(target, body, headers, static, checked)
            loop = asyncio.get_running_loop()
            deadline = loop.time() + timeout_s
            conn = self._idle_connection(target)
            if conn is None:
                async with asyncio.timeout_at(deadline):
                    conn = await self._connect(target)
            await conn.exchange(request, deadline)
            if conn.error is not None:
                raise _ResponseError(conn.error)
            result = SendResult(
                conn.status,
                conn.response_headers(),
                b"".join(conn.body)[: self._capture_bytes].decode("utf-8", "replace"),
                "",
                conn.ip,
                started,
                time.time_ns() // 1000,
            )
            self._release(target, conn)
            conn = None
            return result
        except TimeoutError:
            error = f"timeout: no complete response within {timeout_s:g}s"
        except BlockedError as exc:
            error = f"blocked by the SSRF guard: {exc}"
        except _ResponseError as exc:
            error = f"bad response: {exc}"
        except UnsafeHeaderError as exc:
            error = f"not sent: {exc.message}"
        except ValueError as exc:  # the URL cannot be sent to (stored before today's checks)
            error = f"not sent: invalid url: {exc}"
        except (OSError, ssl.SSLError) as exc:
            error = f"{type(exc).__name__}: {exc}"
        except Exception as exc:  # a bug here must not leave the delivery unrecorded
            log.exception("sender.unexpected", extra={"url": url[:200]})
            error = f"internal error while sending: {type(exc).__name__}: {exc}"
        finally:
            if conn is not None:
                conn.abort()
        ip = conn.ip if conn is not None else ""
        return SendResult(None, {}, "", error, ip, started, time.time_ns() // 1000)

    # ------------------------------------------------------------ connections

    def _idle_connection(self, target: _Target) -> _Connection | None:
        pool = self._idle.get(target.origin)
        now = time.monotonic()
        while pool:
            conn = pool.pop()
            if now - conn.idle_since < _IDLE_TTL_S and conn.is_clean():
                return conn
            conn.close()
        return None

    async def _connect(self, target: _Target) -> _Connection:
        loop = asyncio.get_running_loop()
        infos = await loop.getaddrinfo(
            target.host, target.port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
        )
        reasons = []
        tls = target.scheme == "https"
        for family, _, _, _, sockaddr in infos:
            ip = str(sockaddr[0])
            why = refusal(ip, self._allowed) if self._guard else None
            if why is not None:
                reasons.append(why)
                continue
            conn = _Connection(self._read_bytes, ip)
            try:
                await loop.create_connection(
                    functools.partial(_same, conn),
                    ip,
                    target.port,
                    family=family,
                    ssl=self._ssl if tls else None,
                    server_hostname=target.host if tls else None,
                )
            except OSError as exc:
                reasons.append(f"{ip}: {exc}")
                continue
            return conn
        if reasons and all("is " in r or "embeds" in r for r in reasons):
            raise BlockedError(
                "; ".join(reasons) + " (HOOKCAST_ALLOWED_NETWORKS lists networks to allow)"
            )
        raise ConnectionError("; ".join(reasons) or f"{target.host} did not resolve")

    def _release(self, target: _Target, conn: _Connection) -> None:
        pool = self._idle.setdefault(target.origin, [])
        if conn.reusable() and len(pool) < _MAX_IDLE_PER_ORIGIN:
            conn.idle_since = time.monotonic()
            pool.append(conn)
        else:
            conn.close()


def _expire(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_exception(TimeoutError())


def _same(conn: _Connection) -> _Connection:
    return conn
