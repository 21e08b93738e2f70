"""The only outbound HTTP in hookcast: one shared aiohttp session.

Every attempt has one total deadline (connect, headers, body, a slow drip all count),
never follows redirects and reads at most a capped number of response bytes.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import aiohttp

_MAX_HEADERS_KEPT = 50
_MAX_HEADER_VALUE = 1024


@dataclass(frozen=True, slots=True)
class SendResult:
    status: int | None  # None when no response arrived
    headers: dict[str, str]
    body_excerpt: str
    error: str
    ip_address: str
    started_us: int
    ended_us: int


class Sender:
    def __init__(self, *, read_bytes: int, capture_bytes: int) -> None:
        self._read_bytes = read_bytes
        self._capture_bytes = capture_bytes
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        connector = aiohttp.TCPConnector(
            limit=0,  # the worker caps concurrency itself
            limit_per_host=0,
            ttl_dns_cache=60,
            keepalive_timeout=30,
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            auto_decompress=False,
            skip_auto_headers=("User-Agent", "Content-Type"),
            timeout=aiohttp.ClientTimeout(total=None),
            cookie_jar=aiohttp.DummyCookieJar(),
        )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def send(
        self, url: str, body: bytes, headers: dict[str, str], timeout_s: float
    ) -> SendResult:
        session = self._session
        if session is None:
            raise RuntimeError("sender not started")
        started = time.time_ns() // 1000
        ip = ""
        try:
            async with (
                asyncio.timeout(timeout_s),
                session.post(url, data=body, headers=headers, allow_redirects=False) as resp,
            ):
                ip = _peer_ip(resp)
                raw = await self._read_body(resp)
                return SendResult(
                    resp.status,
                    _kept_headers(resp),
                    raw[: self._capture_bytes].decode("utf-8", "replace"),
                    "",
                    ip,
                    started,
                    time.time_ns() // 1000,
                )
        except TimeoutError:
            error = f"timeout: no complete response within {timeout_s:g}s"
        except aiohttp.ClientError as exc:
            error = f"{type(exc).__name__}: {exc}"
        except OSError as exc:
            error = f"{type(exc).__name__}: {exc}"
        return SendResult(None, {}, "", error, ip, started, time.time_ns() // 1000)

    async def _read_body(self, resp: aiohttp.ClientResponse) -> bytes:
        """Read to the end of the body or to the cap, whichever comes first: a slow drip
        keeps the attempt open, so it counts against the attempt's deadline."""
        chunks: list[bytes] = []
        left = self._read_bytes
        while left > 0:
            chunk = await resp.content.read(left)
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
        return b"".join(chunks)


def _peer_ip(resp: aiohttp.ClientResponse) -> str:
    conn = resp.connection
    if conn is None or conn.transport is None:
        return ""
    peer = conn.transport.get_extra_info("peername")
    return str(peer[0]) if peer else ""


def _kept_headers(resp: aiohttp.ClientResponse) -> dict[str, str]:
    out: dict[str, str] = {}
    for name, value in resp.headers.items():
        if len(out) >= _MAX_HEADERS_KEPT:
            break
        out[str(name)] = str(value)[:_MAX_HEADER_VALUE]
    return out
