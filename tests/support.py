"""Test helpers: a real gateway and a real receiver, each on its own thread and loop.

Running them on their own threads lets synchronous clients (requests, the Convoy SDK)
and async tests talk to them alike.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

import requests
from aiohttp import web

from hookcast import bootstrap
from hookcast.settings import Settings
from hookcast.tracing import Tracing

ADMIN_KEY = "test-admin-key-0123456789"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(predicate: Callable[[], bool], timeout: float = 10.0, step: float = 0.02) -> bool:
    """Poll *predicate* until it holds or *timeout* seconds pass; returns the last value."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return predicate()


class LoopThread:
    """An event loop running on a daemon thread."""

    def __init__(self, name: str) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name=name, daemon=True)
        self._thread.start()

    def run(self, coro: Coroutine[Any, Any, Any], timeout: float = 30.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)
        self.loop.close()


def make_settings(db_path: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "database_url": f"sqlite:///{db_path}",
        "host": "127.0.0.1",
        "port": free_port(),
        "admin_api_key": ADMIN_KEY,
        "allowed_networks": "127.0.0.0/8,::1/128",
        "poll_interval_s": 0.05,
        "lease_margin_s": 2.0,
        "completion_flush_ms": 2.0,
        "shutdown_grace_s": 2.0,
        "log_format": "text",
    }
    values.update(overrides)
    return Settings(**values)


def new_project(base: str, name: str, config: dict[str, Any] | None = None) -> tuple[str, str]:
    """Create a project through the API of the gateway at *base* with the admin key: its
    id and its first key."""
    body: dict[str, Any] = {"name": name}
    if config:
        body["config"] = config
    r = requests.post(
        base + "/api/v1/projects",
        json=body,
        headers={"Authorization": f"Bearer {ADMIN_KEY}"},
        timeout=10,
    )
    assert r.status_code == 201, r.text
    data = r.json()["data"]
    return data["project"]["uid"], data["api_key"]["key"]


class Gateway:
    """hookcast in-process (API + worker), on its own loop thread."""

    def __init__(self, settings: Settings, tracing: Tracing | None = None) -> None:
        self.settings = settings
        self.base = f"http://{settings.host}:{settings.port}"
        self._thread = LoopThread("gateway")
        bootstrap.run_migrations(settings)
        self._running = self._thread.run(bootstrap.start(settings, tracing=tracing))

    def stop(self) -> None:
        self._thread.run(bootstrap.stop(self._running))
        self._thread.close()

    def admin(self, method: str, path: str, **kw: Any) -> requests.Response:
        headers = {"Authorization": f"Bearer {ADMIN_KEY}", **kw.pop("headers", {})}
        return requests.request(method, self.base + path, headers=headers, timeout=10, **kw)

    def create_project(self, name: str = "test", config: dict[str, Any] | None = None) -> Project:
        return Project(self, *new_project(self.base, name, config))


@dataclass
class Project:
    gateway: Gateway
    id: str
    key: str

    @property
    def base(self) -> str:
        return f"{self.gateway.base}/api/v1/projects/{self.id}"

    def call(self, method: str, path: str, **kw: Any) -> requests.Response:
        headers = {"Authorization": f"Bearer {self.key}", **kw.pop("headers", {})}
        return requests.request(method, self.base + path, headers=headers, timeout=10, **kw)

    def ok(self, method: str, path: str, status: int = 200, **kw: Any) -> Any:
        r = self.call(method, path, **kw)
        assert r.status_code == status, f"{method} {path}: {r.status_code} {r.text}"
        body = r.json()
        assert body["status"] is True, body
        return body["data"]

    def endpoint(self, url: str, **fields: Any) -> dict[str, Any]:
        return self.ok("POST", "/endpoints", 201, json={"url": url, "name": url, **fields})  # type: ignore[no-any-return]

    def publish(
        self, endpoint_id: str, event_type: str = "test.event", data: Any = None, **fields: Any
    ) -> dict[str, Any]:
        body = {
            "endpoint_id": endpoint_id,
            "event_type": event_type,
            "data": {"n": 1} if data is None else data,
            **fields,
        }
        return self.ok("POST", "/events", 201, json=body)  # type: ignore[no-any-return]

    def deliveries(self, **query: Any) -> list[dict[str, Any]]:
        return self.ok("GET", "/eventdeliveries", params={"perPage": 1000, **query})["content"]  # type: ignore[no-any-return]


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float


@dataclass
class Behaviour:
    status: int = 200
    delay_s: float = 0.0
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b'{"ok":true}'
    #: send the body in chunks of this many bytes, sleeping drip_s between them
    drip_s: float = 0.0
    chunk: int = 1
    #: drop the TCP connection (RST) instead of answering
    reset: bool = False


class Receiver:
    """A real HTTP receiver on 127.0.0.1 that records every request.

    ``behave(path, Behaviour(...))`` makes one path misbehave; a list of behaviours is
    used in turn (the last one repeats)."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.received: list[Received] = []
        self._lock = threading.Lock()
        self._behaviours: dict[str, list[Behaviour]] = {}
        self._thread = LoopThread("receiver")
        self._runner = self._thread.run(self._start())

    async def _start(self) -> web.AppRunner:
        app = web.Application(client_max_size=16 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", self.port).start()
        return runner

    def behave(self, path: str, *behaviours: Behaviour) -> None:
        with self._lock:
            self._behaviours[path] = list(behaviours)

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        with self._lock:
            self.received.append(Received(request.path, dict(request.headers), body, time.time()))
            queue = self._behaviours.get(request.path)
            behaviour = (queue.pop(0) if len(queue) > 1 else queue[0]) if queue else Behaviour()
        if behaviour.delay_s:
            await asyncio.sleep(behaviour.delay_s)
        if behaviour.reset and request.transport is not None:
            sock = request.transport.get_extra_info("socket")
            if sock is not None:  # SO_LINGER 0: close with a reset, not a FIN
                import socket
                import struct

                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            request.transport.abort()
            raise web.HTTPInternalServerError  # never reaches the client
        if behaviour.drip_s:
            return await self._drip(request, behaviour)
        return web.Response(status=behaviour.status, body=behaviour.body, headers=behaviour.headers)

    @staticmethod
    async def _drip(request: web.Request, behaviour: Behaviour) -> web.StreamResponse:
        response = web.StreamResponse(status=behaviour.status, headers=behaviour.headers)
        response.content_length = len(behaviour.body)
        await response.prepare(request)
        try:
            for i in range(0, len(behaviour.body), behaviour.chunk):
                await response.write(behaviour.body[i : i + behaviour.chunk])
                await asyncio.sleep(behaviour.drip_s)
        except ConnectionError:
            pass  # the gateway gave up, as it should
        return response

    def at(self, path: str) -> list[Received]:
        with self._lock:
            return [r for r in self.received if r.path == path]

    def wait_for(self, path: str, count: int, timeout: float = 10.0) -> list[Received]:
        wait_until(lambda: len(self.at(path)) >= count, timeout)
        return self.at(path)

    def stop(self) -> None:
        self._thread.run(self._runner.cleanup())
        self._thread.close()


class ServerProcess:
    """``hookcast serve`` as a real subprocess, for restart and crash tests."""

    def __init__(self, db_path: str, port: int | None = None, **env: str) -> None:
        import os
        import subprocess
        import sys

        self.port = port or free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log_path = db_path + f".{self.port}.log"
        full_env = {
            **os.environ,
            "HOOKCAST_DATABASE_URL": f"sqlite:///{db_path}",
            "HOOKCAST_ADMIN_API_KEY": ADMIN_KEY,
            "HOOKCAST_ALLOWED_NETWORKS": "127.0.0.0/8",
            "HOOKCAST_POLL_INTERVAL_S": "0.05",
            **env,
        }
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in wait()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "hookcast", "serve", "--port", str(self.port)],
            env=full_env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        ok = wait_until(self._healthy, timeout=20, step=0.05)
        if not ok:
            self.kill()
            raise RuntimeError(f"hookcast did not start; log: {self.log()}")

    def _healthy(self) -> bool:
        if self.proc.poll() is not None:
            return False
        try:
            return requests.get(self.base + "/health", timeout=1).status_code == 200
        except requests.RequestException:
            return False

    def log(self) -> str:
        with open(self.log_path, "rb") as f:
            return f.read().decode(errors="replace")[-4000:]

    def terminate(self, timeout: float = 20) -> int:
        self.proc.terminate()
        return self.wait(timeout)

    def kill(self) -> int:
        self.proc.kill()
        return self.wait(10)

    def wait(self, timeout: float) -> int:
        try:
            return self.proc.wait(timeout)
        finally:
            self._log.close()
