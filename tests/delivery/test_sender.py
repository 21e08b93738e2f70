"""The HTTP/1.1 client against real local servers that answer in awkward ways."""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import Awaitable, Callable

from hookcast.delivery.sender import Sender

LOOPBACK = [ipaddress.ip_network("127.0.0.0/8")]
Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def _serve(handler: Handler) -> tuple[asyncio.Server, str]:
    server = await asyncio.start_server(handler, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    return server, f"http://127.0.0.1:{port}/hook?x=1"


async def _read_request(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":")[1])
    return head + await reader.readexactly(length)


async def test_keep_alive_chunked_and_connection_close() -> None:
    connections = 0
    seen: list[bytes] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        try:
            while True:
                seen.append(await _read_request(reader))
                n = len(seen)
                if n == 2:  # chunked with a trailer
                    writer.write(
                        b"HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n"
                        b"3\r\nabc\r\n2\r\nde\r\n0\r\nX-T: 1\r\n\r\n"
                    )
                elif n == 3:
                    writer.write(
                        b"HTTP/1.1 503 Nope\r\nRetry-After: 7\r\nConnection: close\r\n"
                        b"Content-Length: 0\r\n\r\n"
                    )
                    await writer.drain()
                    writer.close()
                    return
                else:
                    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                await writer.drain()
                if n == 4:
                    writer.close()
                    return
        except asyncio.IncompleteReadError:
            writer.close()

    server, url = await _serve(handler)
    sender = Sender(read_bytes=1024, capture_bytes=100, allowed_networks=LOOPBACK)
    try:
        first = await sender.send(url, b'{"a":1}', {"Content-Type": "application/json"}, 5)
        second = await sender.send(url, b"{}", {}, 5)
        third = await sender.send(url, b"{}", {}, 5)
        fourth = await sender.send(url, b"{}", {}, 5)
    finally:
        await sender.close()
        server.close()
    assert (first.status, first.body_excerpt) == (200, "ok")
    assert (second.status, second.body_excerpt) == (201, "abcde")
    assert third.status == 503 and third.headers["Retry-After"] == "7"
    assert fourth.status == 200
    assert connections == 2  # reused until the server said close
    assert seen[0].startswith(b"POST /hook?x=1 HTTP/1.1\r\nHost: 127.0.0.1:")
    assert seen[0].endswith(b'\r\n\r\n{"a":1}')


async def test_read_cap_and_garbage() -> None:
    async def big(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n" + b"z" * 100000)
        await writer.drain()
        writer.close()

    async def junk(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        writer.write(b"SSH-2.0-OpenSSH\r\n\r\n")
        await writer.drain()
        writer.close()

    s1, big_url = await _serve(big)
    s2, junk_url = await _serve(junk)
    sender = Sender(read_bytes=1000, capture_bytes=10, allowed_networks=LOOPBACK)
    try:
        capped = await sender.send(big_url, b"{}", {}, 5)
        garbage = await sender.send(junk_url, b"{}", {}, 5)
    finally:
        await sender.close()
        s1.close()
        s2.close()
    assert capped.status == 200 and capped.body_excerpt == "z" * 10
    assert garbage.status is None and garbage.error.startswith("bad response")


async def test_guard_refuses_loopback_unless_allowed() -> None:
    async def ok(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
        await writer.drain()
        writer.close()

    server, url = await _serve(ok)
    guarded = Sender(read_bytes=100, capture_bytes=100)
    try:
        blocked = await guarded.send(url, b"{}", {}, 5)
        by_name = await guarded.send(url.replace("127.0.0.1", "localhost"), b"{}", {}, 5)
    finally:
        await guarded.close()
        server.close()
    assert blocked.status is None and "SSRF guard" in blocked.error and "loopback" in blocked.error
    assert by_name.status is None and "SSRF guard" in by_name.error
