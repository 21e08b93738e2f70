"""Per-endpoint rate limits shared by worker processes through Redis (HOOKCAST_REDIS_URL).

The Redis tests are never skipped: without Redis on 127.0.0.1:6379 they fail, saying so.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from hookcast import bootstrap
from hookcast.delivery.shared import RateAsk, RedisRateLimiter
from pg_support import fresh_database
from support import Behaviour, Gateway, LoopThread, Project, Receiver, make_settings, new_project

REDIS_URL = os.environ.get("HOOKCAST_TEST_REDIS", "redis://127.0.0.1:6379/0")


@pytest.fixture(scope="module", autouse=True)
def redis_up() -> None:
    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=3).ping()
    except redis.RedisError as exc:
        pytest.fail(
            f"Redis is not reachable at {REDIS_URL}: {exc}\nThe shared-limit tests need it; "
            "start Redis (or set HOOKCAST_TEST_REDIS) and run again.",
            pytrace=False,
        )


def test_tokens_are_shared_between_limiters_on_redis_time() -> None:
    async def go() -> list[int]:
        limiters = [RedisRateLimiter(REDIS_URL) for _ in range(3)]
        endpoint = "t-" + secrets.token_hex(6)
        try:
            # three "workers" ask for 15 each at once from a limit of 20 per 10 s
            ask = [RateAsk(endpoint, 15, 20, 10)]
            grants = await asyncio.gather(*(lim.take(ask) for lim in limiters))
            return [g[endpoint].granted for g in grants if g is not None] + [
                int(grants[0][endpoint].interval_us) if grants[0] else -1,
                max(g[endpoint].wait_us for g in grants if g is not None),
            ]
        finally:
            for lim in limiters:
                await lim.close()

    *granted, interval, wait = asyncio.run(go())
    assert len(granted) == 3 and sum(granted) == 20  # one burst in all, not one each
    assert interval == 500_000  # 10 s / 20
    assert 400_000 <= wait <= 500_000  # the next token half a second on


def test_an_unreachable_redis_falls_back_to_local_limits() -> None:
    async def go() -> object:
        limiter = RedisRateLimiter("redis://127.0.0.1:1/0")
        try:
            return await limiter.take([RateAsk("x", 1, 1, 1)])
        finally:
            await limiter.close()

    assert asyncio.run(go()) is None


class _Worker:
    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.log_path = log
        self._log = open(log, "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "hookcast", "worker"],
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def ready(self, peers: int | None) -> bool:
        """Started; with *peers*, its last count of live workers (Redis) is *peers*."""
        lines = self.log_path.read_text(errors="replace").splitlines()
        if peers is None:
            return any("worker.started" in line for line in lines)
        counts = [line for line in lines if "worker.peers" in line]
        return bool(counts) and counts[-1].rstrip().endswith(f"workers={peers}")

    def stop(self) -> int | None:
        self.proc.terminate()
        try:
            return self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
            return None
        finally:
            self._log.close()


@pytest.fixture
def pg_url() -> Iterator[str]:
    with fresh_database("hookcast_limits") as url:
        yield url


LIMIT, PERIOD, EVENTS = 10, 1, 50


def _run_three_workers(
    pg_url: str,
    receiver: Receiver,
    tmp_path: Path,
    *,
    shared: bool,
    events: int = EVENTS,
    **endpoint: object,
) -> list[float]:
    """3 worker processes deliver *events* events to one endpoint (rate limited to
    LIMIT/PERIOD unless *endpoint* says otherwise); the receiver's arrival times."""
    settings = make_settings("unused", database_url=pg_url)
    bootstrap.run_migrations(settings)
    api = LoopThread("limits-api")
    running = api.run(bootstrap.start(settings, api=True, worker=False))
    gateway = Gateway.__new__(Gateway)
    gateway.settings, gateway.base = settings, f"http://{settings.host}:{settings.port}"
    env = {
        **os.environ,
        "HOOKCAST_DATABASE_URL": pg_url,
        "HOOKCAST_ALLOWED_NETWORKS": "127.0.0.0/8",
        "HOOKCAST_POLL_INTERVAL_S": "0.05",
        # small claims, so that every worker gets a share of the endpoint's deliveries
        "HOOKCAST_CLAIM_BATCH": "4",
        "HOOKCAST_LOG_FORMAT": "text",
        "HOOKCAST_REDIS_URL": REDIS_URL if shared else "",
    }
    workers = [_Worker(env, tmp_path / f"w{i}.log") for i in range(3)]
    delay = endpoint.pop("delay_s", None)
    path = f"/limited-{'shared' if shared else 'local'}-{len(endpoint)}"
    fields = endpoint or {"rate_limit": LIMIT, "rate_limit_duration": PERIOD}
    try:
        project = Project(gateway, *new_project(gateway.base, "limits"))
        ep = project.endpoint(receiver.url + path, **fields)
        if delay is not None:
            receiver.behave(path, Behaviour(delay_s=float(str(delay))))
        # the workers are up, polling, and (with Redis) have counted each other: a worker
        # that starts late under load would otherwise hold a larger share for a second
        deadline = time.monotonic() + 30
        while not all(w.ready(3 if shared else None) for w in workers):
            assert time.monotonic() < deadline, [w.log_path.read_text() for w in workers]
            assert all(w.proc.poll() is None for w in workers), "a worker exited"
            time.sleep(0.05)
        for i in range(events):
            project.publish(ep["uid"], data={"i": i})
        got = receiver.wait_for(path, events, timeout=30)
        assert len(got) == events, [w.proc.poll() for w in workers]
        return sorted(r.at for r in got)
    finally:
        codes = [w.stop() for w in workers]
        api.run(bootstrap.stop(running))
        api.close()
        assert codes == [0, 0, 0], "a worker did not stop cleanly on SIGTERM"


def _worst_excess(times: list[float]) -> float:
    """The largest ratio of deliveries seen by time t to what the limit allows by then
    (a burst of LIMIT, then LIMIT per PERIOD), over every arrival."""
    first = times[0]
    return max(n / (LIMIT + LIMIT * (t - first) / PERIOD) for n, t in enumerate(times, 1))


def test_a_rate_limit_holds_within_10_percent_across_three_workers(
    pg_url: str, receiver: Receiver, tmp_path: Path
) -> None:
    times = _run_three_workers(pg_url, receiver, tmp_path, shared=True)
    excess = _worst_excess(times)
    print(f"shared: worst excess {excess:.3f}, span {times[-1] - times[0]:.2f} s")
    assert excess <= 1.10, times
    # 50 at 10/s after a burst of 10 take about 4 s: the limit, not a stall
    assert times[-1] - times[0] >= 0.9 * (EVENTS - LIMIT) / LIMIT * PERIOD


def test_without_redis_each_worker_applies_the_limit_on_its_own(
    pg_url: str, receiver: Receiver, tmp_path: Path
) -> None:
    """The control: the same run without Redis exceeds the limit (each of the 3 workers
    has its own bucket), which is what the shared limit above prevents."""
    times = _run_three_workers(pg_url, receiver, tmp_path, shared=False)
    excess = _worst_excess(times)
    print(f"per-process: worst excess {excess:.3f}, span {times[-1] - times[0]:.2f} s")
    assert excess > 1.5, times


def test_heartbeats_count_the_live_workers() -> None:
    async def go() -> list[int]:
        limiter = RedisRateLimiter(REDIS_URL)
        key = "hookcast:test-workers:" + secrets.token_hex(4)
        try:
            seen = [await limiter.heartbeat("a", key), await limiter.heartbeat("b", key)]
            seen.append(await limiter.heartbeat("a", key))  # a beat again: still two
            await limiter.leave("b", key)
            seen.append(await limiter.heartbeat("a", key))
            return seen
        finally:
            await limiter.close()

    assert asyncio.run(go()) == [1, 2, 2, 1]


def _busiest(starts: list[float], hold_s: float) -> int:
    """The most requests the receiver held at once (each is held *hold_s*)."""
    return max(sum(1 for t in starts if s <= t < s + hold_s * 0.9) for s in starts)


@pytest.mark.parametrize("shared", [True, False], ids=["redis", "per-process"])
def test_a_concurrency_cap_is_divided_among_live_workers(
    pg_url: str, receiver: Receiver, tmp_path: Path, shared: bool
) -> None:
    cap, hold = 3, 0.4
    starts = _run_three_workers(
        pg_url,
        receiver,
        tmp_path,
        shared=shared,
        events=18,
        max_in_flight=cap,
        delay_s=hold,
    )
    busiest = _busiest(starts, hold)
    print(f"{'redis' if shared else 'per-process'}: at most {busiest} in flight (cap {cap})")
    if shared:
        assert busiest <= cap
    else:  # the control: each of the 3 workers holds up to the whole cap
        assert busiest > cap
