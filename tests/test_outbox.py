"""The transactional outbox: the writers of every driver, ``outbox install`` and the relay's
answers, on a real PostgreSQL application database and a real hookcast gateway.

Each write goes through the adapter in an application transaction; a rolled-back one
must never reach hookcast, a committed one exactly once (one event, one delivery).
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Awaitable, Callable, Iterator
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import orjson
import psycopg
import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine
from sqlalchemy.orm import Session

from hookcast import apiclient, cli
from hookcast.domain.errors import ValidationError
from hookcast.domain.outbox import (
    Answer,
    OutboxEvent,
    OutboxRow,
    classify,
    idempotency_key,
    publish_request,
    retry_delay,
)
from hookcast.outbox import asyncpg as outbox_asyncpg
from hookcast.outbox import django as outbox_django
from hookcast.outbox import psycopg as outbox_psycopg
from hookcast.outbox import publish, publish_async
from hookcast.outbox import sqlalchemy as outbox_sa
from hookcast.outbox.relay import Relay, RelayOptions, Tally
from hookcast.outbox.table import OutboxTable
from pg_support import fresh_database
from support import Gateway, Project, Receiver, make_settings

# ------------------------------------------------------------------ fixtures


@pytest.fixture(scope="module")
def app_url() -> Iterator[str]:
    """The application's own database (not hookcast's), with the outbox installed by the
    command a user runs."""
    with fresh_database("hookcast_outbox_app", migrated=False) as url:
        assert cli.main(["outbox", "install", "--database-url", url]) == 0
        yield url


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    gateway = Gateway(make_settings(str(tmp_path_factory.mktemp("outbox") / "hookcast.db")))
    yield gateway
    gateway.stop()


@pytest.fixture(scope="module")
def rx() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.stop()


@pytest.fixture(scope="module")
def proj(gw: Gateway) -> Project:
    return gw.create_project("outbox")


@pytest.fixture(scope="module")
def endpoint(proj: Project, rx: Receiver) -> str:
    return str(proj.endpoint(rx.url + "/outbox")["uid"])


def drain(app_url: str, base: str, key: str, project: str = "", **options: Any) -> Tally:
    """Run a relay until no row is due (in this process, on its own loop)."""

    async def go() -> Tally:
        async with apiclient.ApiClient(base, key) as client:
            relay = Relay(
                app_url,
                client,
                project,
                options=RelayOptions(drain=True, poll_interval_s=0.05, **options),
            )
            return await relay.run()

    return asyncio.run(go())


def outbox_rows(app_url: str) -> list[dict[str, Any]]:
    with psycopg.connect(app_url) as conn:
        cur = conn.execute(
            "SELECT id::text, status, attempts, last_error, available_at > now() AS later, "
            "event_type FROM hookcast_outbox ORDER BY seq"
        )
        names = [d.name for d in cur.description or []]
        return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]


def events_with_key(proj: Project, key: str) -> list[dict[str, Any]]:
    return proj.ok("GET", "/events", params={"idempotencyKey": key, "perPage": 100})["content"]  # type: ignore[no-any-return]


# ------------------------------------------------------------------ one writer per driver

Writer = Callable[[str, OutboxEvent, bool], Awaitable[str]]


async def sa_sync(url: str, event: OutboxEvent, commit: bool) -> str:
    engine = sa.create_engine(url.replace("postgresql://", "postgresql+psycopg://"))
    try:
        with Session(engine) as session:
            session.execute(sa.text("SELECT 1"))  # the application's own work
            row_id = outbox_sa.publish(session, event)
            session.commit() if commit else session.rollback()
        return row_id
    finally:
        engine.dispose()


async def sa_async(url: str, event: OutboxEvent, commit: bool) -> str:
    engine = create_async_engine(url.replace("postgresql://", "postgresql+asyncpg://"))
    try:
        async with AsyncSession(engine) as session:
            row_id = await outbox_sa.publish_async(session, event)
            await (session.commit() if commit else session.rollback())
        return row_id
    finally:
        await engine.dispose()


async def psycopg_sync(url: str, event: OutboxEvent, commit: bool) -> str:
    with psycopg.connect(url) as conn:
        row_id = outbox_psycopg.publish(conn, event)
        conn.commit() if commit else conn.rollback()
    return row_id


async def psycopg_async(url: str, event: OutboxEvent, commit: bool) -> str:
    async with await psycopg.AsyncConnection.connect(url) as conn:
        row_id = await outbox_psycopg.publish_async(conn, event)
        await (conn.commit() if commit else conn.rollback())
    return row_id


class _Rollback(Exception):
    pass


async def asyncpg_conn(url: str, event: OutboxEvent, commit: bool) -> str:
    conn = await asyncpg.connect(url)
    row_id = ""
    try:
        async with conn.transaction():
            row_id = await outbox_asyncpg.publish(conn, event)
            if not commit:
                raise _Rollback
    except _Rollback:
        pass
    finally:
        await conn.close()
    return row_id


def _django_for(url: str) -> None:
    """Django configured once for this process, its default database the application's."""
    import django
    from django.conf import settings

    if settings.configured:
        return
    parts = urlsplit(url)
    settings.configure(
        DATABASES={
            "default": {
                "ENGINE": "django.db.backends.postgresql",
                "NAME": parts.path.lstrip("/"),
                "USER": parts.username or "postgres",
                "HOST": parts.hostname or "127.0.0.1",
                "PORT": parts.port or 5432,
            }
        },
        USE_TZ=True,
    )
    django.setup()


async def django_atomic(url: str, event: OutboxEvent, commit: bool) -> str:
    """Django's ORM is synchronous (it refuses to run in an event loop's thread): the
    application's request, in a thread of its own, in ``transaction.atomic()``."""

    def request() -> str:
        from django.db import connection, connections, transaction

        _django_for(url)
        row_id = ""
        try:
            with transaction.atomic():
                connection.cursor().execute("SELECT 1")  # the application's own work
                row_id = outbox_django.publish(event)
                if not commit:
                    raise _Rollback
        except _Rollback:
            pass
        finally:
            connections.close_all()
        return row_id

    return await asyncio.to_thread(request)


async def dispatched(url: str, event: OutboxEvent, commit: bool) -> str:
    """The type-dispatching entry points: sync psycopg via publish(), asyncpg via
    publish_async()."""
    with psycopg.connect(url) as conn:
        first = publish(conn, event)
        conn.rollback()
    assert first
    pool = await asyncpg.create_pool(url, min_size=1, max_size=1)
    try:
        async with pool.acquire() as conn:
            tx = conn.transaction()
            await tx.start()
            row_id = await publish_async(conn, event)
            await (tx.commit() if commit else tx.rollback())
    finally:
        await pool.close()
    return row_id


WRITERS: dict[str, Writer] = {
    "sqlalchemy": sa_sync,
    "sqlalchemy_async": sa_async,
    "psycopg": psycopg_sync,
    "psycopg_async": psycopg_async,
    "asyncpg": asyncpg_conn,
    "django": django_atomic,
    "dispatch": dispatched,
}


@pytest.mark.parametrize("driver", WRITERS)
def test_commit_publishes_once_and_rollback_nothing(
    driver: str, app_url: str, gw: Gateway, proj: Project, endpoint: str, rx: Receiver
) -> None:
    write = WRITERS[driver]
    kept = OutboxEvent(f"{driver}.kept", {"driver": driver, "n": 1}, endpoint_id=endpoint)
    dropped = OutboxEvent(f"{driver}.dropped", {"driver": driver, "n": 2}, endpoint_id=endpoint)
    kept_id = asyncio.run(write(app_url, kept, True))
    dropped_id = asyncio.run(write(app_url, dropped, False))
    assert [r["id"] for r in outbox_rows(app_url)] == [kept_id]  # the rollback left nothing

    tally = drain(app_url, gw.base, proj.key, proj.id)
    assert (tally.claimed, tally.stored, tally.failed) == (1, 1, 0)
    assert outbox_rows(app_url) == []
    (event,) = events_with_key(proj, f"outbox:{kept_id}")
    assert event["event_type"] == f"{driver}.kept"
    assert events_with_key(proj, f"outbox:{dropped_id}") == []
    deliveries = proj.deliveries(eventId=event["uid"])
    assert len(deliveries) == 1
    got = [r for r in rx.wait_for("/outbox", 1) if orjson.loads(r.body).get("driver") == driver]
    assert [orjson.loads(r.body) for r in got] == [{"driver": driver, "n": 1}]


def test_fanout_broadcast_headers_and_own_keys_reach_hookcast(
    app_url: str, gw: Gateway, proj: Project, rx: Receiver
) -> None:
    for path in ("/fan1", "/fan2"):
        ep = proj.endpoint(rx.url + path, owner_id="acme")
        body = {"name": path, "endpoint_id": ep["uid"], "filter_config": {"event_types": ["fan.*"]}}
        proj.ok("POST", "/subscriptions", 201, json=body)
    caster = proj.ok("POST", "/api-keys", 201, json={"name": "relay", "broadcast": True})["key"]
    fan = OutboxEvent(
        "fan.out",
        {"to": "owner"},
        owner_id="acme",
        custom_headers={"X-Order": "42"},
        idempotency_key="order-42-created",
        ordering_key="order-42",
    )
    cast = OutboxEvent("fan.cast", {"to": "all"}, broadcast=True, project_id=proj.id)
    asyncio.run(asyncpg_conn(app_url, fan, True))
    asyncio.run(asyncpg_conn(app_url, cast, True))

    tally = drain(app_url, gw.base, caster, proj.id)
    assert (tally.stored, tally.failed) == (2, 0), outbox_rows(app_url)
    assert outbox_rows(app_url) == []
    (fan_event,) = events_with_key(proj, "order-42-created")
    assert fan_event["headers"]["X-Order"] == ["42"]
    for path in ("/fan1", "/fan2"):
        first = rx.wait_for(path, 2)
        assert sorted(orjson.loads(r.body)["to"] for r in first) == ["all", "owner"]
        owner = next(r for r in first if orjson.loads(r.body)["to"] == "owner")
        assert owner.headers["X-Order"] == "42"


def test_refused_rows_are_kept_failed_and_unreachable_hookcast_is_retried(
    app_url: str, gw: Gateway, proj: Project, endpoint: str
) -> None:
    good = OutboxEvent("mixed.good", {"ok": True}, endpoint_id=endpoint)
    unknown = OutboxEvent("mixed.unknown", {"ok": False}, endpoint_id="no-such-endpoint")
    homeless = OutboxEvent("mixed.homeless", {"ok": False}, endpoint_id=endpoint)
    good_id = asyncio.run(psycopg_sync(app_url, good, True))
    unknown_id = asyncio.run(psycopg_sync(app_url, unknown, True))

    # hookcast unreachable: nothing is lost, every row waits for a retry
    closed = f"http://127.0.0.1:{_closed_port()}"
    tally = drain(app_url, closed, proj.key, proj.id)
    assert (tally.claimed, tally.retrying, tally.stored) == (2, 2, 0)
    rows = outbox_rows(app_url)
    assert [(r["status"], r["attempts"], r["later"]) for r in rows] == [("pending", 1, True)] * 2
    assert all("cannot reach" in r["last_error"] for r in rows)

    with psycopg.connect(app_url) as conn:  # make them due now rather than in 0.5 s
        conn.execute("UPDATE hookcast_outbox SET available_at = now()")
    tally = drain(app_url, gw.base, proj.key, proj.id)
    assert (tally.stored, tally.failed) == (1, 1)
    (left,) = outbox_rows(app_url)
    assert (left["id"], left["status"], left["attempts"]) == (unknown_id, "failed", 2)
    assert "HTTP 4" in left["last_error"] and "endpoint" in left["last_error"].lower()
    assert len(events_with_key(proj, f"outbox:{good_id}")) == 1

    # a failed row is never retried by the relay; a row naming no project (and a relay
    # without one) is refused with a reason
    homeless_id = asyncio.run(psycopg_sync(app_url, homeless, True))
    tally = drain(app_url, gw.base, proj.key, "")
    assert (tally.claimed, tally.failed) == (1, 1)
    failed = {r["id"]: r for r in outbox_rows(app_url)}
    assert set(failed) == {unknown_id, homeless_id}
    assert "names no project" in failed[homeless_id]["last_error"]
    with psycopg.connect(app_url) as conn:
        conn.execute("DELETE FROM hookcast_outbox")


def test_a_refused_key_stops_the_relay_and_changes_nothing(
    app_url: str, gw: Gateway, proj: Project, endpoint: str
) -> None:
    row_id = asyncio.run(asyncpg_conn(app_url, OutboxEvent("k", {}, endpoint_id=endpoint), True))
    from hookcast.outbox.relay import RelayError

    with pytest.raises(RelayError, match="refused the relay's API key"):
        drain(app_url, gw.base, "not-a-key", proj.id)
    (row,) = outbox_rows(app_url)
    assert (row["id"], row["status"], row["attempts"]) == (row_id, "pending", 0)
    drain(app_url, gw.base, proj.key, proj.id)
    assert outbox_rows(app_url) == []


def test_install_is_idempotent_and_names_its_channel(
    app_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    assert cli.main(["outbox", "install", "--database-url", app_url, "--json"]) == 0
    doc = orjson.loads(capsys.readouterr().out)
    assert doc == {
        "table": '"public"."hookcast_outbox"',
        "channel": "hookcast_outbox",
        "created": False,
    }
    args = ["outbox", "install", "--database-url", app_url, "--schema", "billing"]
    assert cli.main(args) == 0
    assert "created" in capsys.readouterr().out
    assert cli.main(args) == 0
    assert "already there" in capsys.readouterr().out
    table = OutboxTable("billing")
    event = OutboxEvent("b", {"x": 1}, endpoint_id="e")
    with psycopg.connect(app_url) as conn:
        outbox_psycopg.publish(conn, event, table=table)
        conn.commit()
        (count,) = conn.execute("SELECT count(*) FROM billing.hookcast_outbox").fetchone() or (0,)
        conn.execute("DROP SCHEMA billing CASCADE")
    assert count == 1
    assert cli.main(["outbox", "install", "--database-url", "sqlite:///x.db"]) == 2
    assert "PostgreSQL" in capsys.readouterr().err


def test_a_missing_table_is_named_with_the_command_that_creates_it(
    app_url: str, gw: Gateway, proj: Project
) -> None:
    from hookcast.outbox.relay import RelayError

    async def go() -> None:
        async with apiclient.ApiClient(gw.base, proj.key) as client:
            relay = Relay(
                app_url, client, proj.id, OutboxTable("nowhere"), RelayOptions(drain=True)
            )
            await relay.run()

    with pytest.raises(RelayError, match="hookcast outbox install"):
        asyncio.run(go())


def test_the_relay_command_names_what_is_missing(app_url: str, gw: Gateway, proj: Project) -> None:
    argv = [sys.executable, "-m", "hookcast", "relay", "--source-url", app_url, "--drain"]
    argv += ["--url", gw.base, "--key", proj.key, "--text-logs"]
    done = subprocess.run(
        [*argv, "--schema", "nowhere"], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 2
    assert "hookcast outbox install --database-url URL --schema nowhere" in done.stderr
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert f"project={proj.id}" in done.stderr  # the key's own project, found through the API
    assert "relay.stopped" in done.stderr


def test_importing_the_outbox_loads_no_driver() -> None:
    code = (
        "import sys, hookcast.outbox as o; "
        "o.OutboxEvent('t', {}, endpoint_id='e'); "
        "print(sorted(m for m in ('sqlalchemy', 'psycopg', 'asyncpg', 'aiohttp', 'django') "
        "if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=30
    ).stdout
    assert out.strip() == "[]"


# ------------------------------------------------------------------ the pure decisions


@pytest.mark.parametrize(
    "fields",
    [
        {},
        {"endpoint_id": "e", "owner_id": "o"},
        {"owner_id": "o", "broadcast": True},
    ],
)
def test_an_event_needs_exactly_one_target(fields: dict[str, Any]) -> None:
    with pytest.raises(ValidationError, match="exactly one target"):
        OutboxEvent("t", {}, **fields)


def test_bad_events_are_refused_when_written() -> None:
    with pytest.raises(ValidationError, match="data"):
        OutboxEvent("t", None, endpoint_id="e")
    with pytest.raises(ValidationError, match="event_type"):
        OutboxEvent("", {}, endpoint_id="e")
    with pytest.raises(ValidationError, match="idempotency_key"):
        OutboxEvent("t", {}, endpoint_id="e", idempotency_key="x" * 201)
    with pytest.raises(ValidationError, match="custom_headers"):
        OutboxEvent("t", {}, endpoint_id="e", custom_headers={"Bad Name": "v"})
    from hookcast.outbox.table import values

    with pytest.raises(ValidationError, match="JSON"):
        values(OutboxEvent("t", {"when": object()}, endpoint_id="e"))


def test_rows_become_the_rest_publish_calls() -> None:
    row = OutboxRow("r1", OutboxEvent("t", {"a": 1}, owner_id="o", ordering_key="k"))
    req = publish_request(row, "p1")
    assert req.path == "/api/v1/projects/p1/events/fanout"
    assert req.body == {
        "event_type": "t",
        "data": {"a": 1},
        "idempotency_key": "outbox:r1",
        "ordering_key": "k",
        "owner_id": "o",
    }
    own = OutboxRow(
        "r2", OutboxEvent("t", 1, broadcast=True, idempotency_key="mine", project_id="p2")
    )
    assert idempotency_key(own) == "mine"
    assert publish_request(own, "p1").path == "/api/v1/projects/p2/events/broadcast"
    single = publish_request(OutboxRow("r3", OutboxEvent("t", [], endpoint_id="e")), "p1")
    assert (single.path, single.body["endpoint_id"]) == ("/api/v1/projects/p1/events", "e")


def test_answers_and_backoff() -> None:
    assert [classify(s) for s in (201, 400, 401, 403, 404, 408, 429, 500, 503, 0)] == [
        Answer.STORED,
        Answer.REJECTED,
        Answer.UNAUTHORIZED,
        Answer.REJECTED,
        Answer.REJECTED,
        Answer.RETRY,
        Answer.RETRY,
        Answer.RETRY,
        Answer.RETRY,
        Answer.RETRY,
    ]
    assert retry_delay(1, lambda: 0.0) == 0.25
    assert retry_delay(1, lambda: 0.999999) == pytest.approx(0.5)
    assert retry_delay(3, lambda: 0.999999) == pytest.approx(2.0)
    assert retry_delay(50, lambda: 0.999999) == pytest.approx(60.0)


def _closed_port() -> int:
    from support import free_port

    return free_port()
