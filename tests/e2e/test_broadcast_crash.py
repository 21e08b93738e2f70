"""kill -9 in the middle of a broadcast's fan-out; the restarted server completes it with
no endpoint getting two deliveries and none left out."""

from __future__ import annotations

import asyncio
import signal
import sqlite3
from pathlib import Path

import requests

from hookcast.api import admin
from hookcast.domain.ids import new_id
from hookcast.store import migrate, open_store
from support import ServerProcess, wait_until

ENDPOINTS = 12_000
DEAD_URL = "http://127.0.0.1:9/unused"  # deliveries are not the point here


def _seed(db: str) -> tuple[str, str]:
    """A project with many subscribed endpoints, written straight into the file."""
    url = f"sqlite:///{db}"
    migrate.upgrade(url)

    async def make() -> tuple[str, str]:
        store = open_store(url)
        await store.open()
        try:
            # paused project-wide release keeps deliveries from being attempted during the test
            project, _, _ = await admin.create_project(
                store.records, "crash", config={"broadcast_rate": 1}
            )
            from hookcast.domain.models import KeyRole

            _, token = await admin.create_api_key(
                store.records, project_id=project.id, role=KeyRole.ADMIN, can_broadcast=True
            )
            return project.id, token
        finally:
            await store.close()

    pid, token = asyncio.run(make())
    conn = sqlite3.connect(db)
    with conn:
        endpoints, subs = [], []
        for i in range(ENDPOINTS):
            eid = new_id()
            endpoints.append(
                (
                    eid,
                    pid,
                    f"o{i % 300}",
                    f"e{i}",
                    DEAD_URL,
                    "active",
                    '[{"id":"S","value":"whsec_c2VjcmV0","created_at_us":0}]',
                    1,
                    10,
                    "application/json",
                    0,
                    0,
                )
            )
            subs.append(
                (
                    new_id(),
                    pid,
                    eid,
                    "s",
                    '{"event_types":["*"],"filter":{}}',
                    "at_least_once",
                    0,
                    0,
                )
            )
        conn.executemany(
            "INSERT INTO endpoints (id, project_id, owner_id, name, url, status, secrets, "
            "advanced_signatures, http_timeout, content_type, created_at_us, updated_at_us) "
            "VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
            endpoints,
        )
        conn.executemany(
            "INSERT INTO subscriptions (id, project_id, endpoint_id, name, filter_config, "
            "delivery_mode, created_at_us, updated_at_us) VALUES (?,?,?,?,?,?,?,?)",
            subs,
        )
    conn.close()
    return pid, token


def _counts(db: str, event_id: str) -> tuple[int, int]:
    conn = sqlite3.connect(db)
    try:
        total, distinct = conn.execute(
            "SELECT COUNT(*), COUNT(DISTINCT endpoint_id) FROM deliveries WHERE event_id = ?",
            (event_id,),
        ).fetchone()
        return int(total), int(distinct)
    finally:
        conn.close()


def test_kill_9_mid_fanout_then_restart_completes_without_duplicates(tmp_path: Path) -> None:
    db = str(tmp_path / "fanout.db")
    pid, key = _seed(db)
    env = {"HOOKCAST_FANOUT_CHUNK": "25", "HOOKCAST_LEASE_MARGIN_S": "1"}
    server = ServerProcess(db, **env)
    auth = {"Authorization": f"Bearer {key}"}
    r = requests.post(
        f"{server.base}/api/v1/projects/{pid}/events/broadcast",
        headers=auth,
        json={"event_type": "x", "data": {"k": 1}},
        timeout=10,
    )
    assert r.status_code == 201, r.text
    event_id = r.json()["data"]["uid"]
    assert wait_until(lambda: _counts(db, event_id)[0] > 0, 10, step=0.005)
    server.proc.send_signal(signal.SIGKILL)
    server.wait(10)
    written_at_crash = _counts(db, event_id)[0]
    assert 0 < written_at_crash < ENDPOINTS, written_at_crash  # really in the middle
    server = ServerProcess(db, port=server.port, **env)
    try:

        def done() -> bool:
            r = requests.get(
                f"{server.base}/api/v1/projects/{pid}/events/{event_id}", headers=auth, timeout=10
            )
            return bool(r.json()["data"]["broadcast"]["fanout_done"])

        assert wait_until(done, 60)
    finally:
        server.terminate()
    total, distinct = _counts(db, event_id)
    assert total == distinct == ENDPOINTS
