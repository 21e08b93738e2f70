"""API keys: create, list (never secrets), revoke, expire — over the API and the CLI."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from hookcast import bootstrap, cli
from hookcast.api import admin
from hookcast.domain.errors import NotFoundError
from hookcast.domain.models import KeyRole
from hookcast.settings import Settings
from hookcast.store import migrate
from pg_support import fresh_database
from support import Gateway, Project, wait_until

_SECRET_FIELDS = {"key", "key_hash", "hash", "mask", "secret", "token"}


def _key(project: Project, **body: Any) -> tuple[str, Project]:
    """A new key of *project*: its id and a client using it."""
    data = project.ok("POST", "/api-keys", 201, json=body)
    return data["uid"], Project(project.gateway, project.id, data["key"])


def test_list_shows_keys_without_secrets(project: Project) -> None:
    viewer_id, viewer = _key(project, name="ro", role="viewer")
    caster_id, caster = _key(project, name="b", role="publisher", broadcast=True)
    r = project.call("GET", "/api-keys")
    assert r.status_code == 200
    listed = {k["uid"]: k for k in r.json()["data"]}
    assert {viewer_id, caster_id} <= set(listed)
    assert len(listed) == 3  # and the project's first (admin) key
    for key in listed.values():
        assert not _SECRET_FIELDS & set(key), key
        assert key["project_id"] == project.id and key["status"] == "active"
        assert key["revoked_at"] is None
    assert listed[viewer_id]["role"] == "viewer" and listed[viewer_id]["name"] == "ro"
    assert listed[caster_id]["broadcast"] is True and listed[caster_id]["role"] == "publisher"
    for token in (project.key, viewer.key, caster.key):
        # neither the key nor its secret part, nor its mask, anywhere in the answer
        for part in token.split(".")[1:]:
            assert part not in r.text


def test_revoked_key_stops_working(project: Project) -> None:
    key_id, viewer = _key(project, role="viewer")
    assert viewer.call("GET", "/endpoints").status_code == 200  # now cached
    revoked = project.ok("DELETE", f"/api-keys/{key_id}")
    assert revoked["uid"] == key_id and revoked["status"] == "revoked" and revoked["revoked_at"]
    # the revoking process forgets the key at once; others within their 1 s cache
    r = viewer.call("GET", "/endpoints")
    assert r.status_code == 401
    body = r.json()
    assert body == {"status": False, "message": "authorization failed: the key was revoked"}
    listed = {k["uid"]: k for k in project.ok("GET", "/api-keys")}
    assert listed[key_id]["status"] == "revoked"
    # revoking twice keeps the first time
    again = project.ok("DELETE", f"/api-keys/{key_id}")
    assert again["revoked_at"] == revoked["revoked_at"]
    assert project.call("DELETE", "/api-keys/01ARZ3NDEKTSV4RRFFQ69G5FAV").status_code == 404


def test_a_key_may_revoke_itself(project: Project) -> None:
    key_id, admin = _key(project, role="admin")
    assert admin.call("DELETE", f"/api-keys/{key_id}").status_code == 200
    assert admin.call("GET", "/api-keys").status_code == 401
    assert project.call("GET", "/api-keys").status_code == 200


def test_expired_key_is_refused(project: Project) -> None:
    _, short = _key(project, role="viewer", expires_in_days=0.3 / 86_400)  # 0.3 s
    expires = short.call("GET", "/endpoints")
    assert expires.status_code in (200, 401)
    assert wait_until(lambda: short.call("GET", "/endpoints").status_code == 401, timeout=5)
    r = short.call("GET", "/endpoints")
    assert r.json() == {"status": False, "message": "authorization failed: the key has expired"}
    listed = project.ok("GET", "/api-keys")
    assert [k["status"] for k in listed if k["role"] == "viewer"] == ["expired"]


def test_only_admins_of_the_project_manage_keys(gateway: Gateway, project: Project) -> None:
    key_id, _ = _key(project, role="viewer")
    _, publisher = _key(project, role="publisher", broadcast=True)
    _, viewer = _key(project, role="viewer")
    other = gateway.create_project("other")
    for caller, denied in ((publisher, 403), (viewer, 403), (other, 404)):
        c = Project(gateway, project.id, caller.key)
        assert c.call("GET", "/api-keys").status_code == denied
        assert c.call("POST", "/api-keys", json={"role": "admin"}).status_code == denied
        assert c.call("DELETE", f"/api-keys/{key_id}").status_code == denied
    # another project's admin cannot revoke our key through its own project either
    assert other.call("DELETE", f"/api-keys/{key_id}").status_code == 404
    assert all(k["status"] == "active" for k in project.ok("GET", "/api-keys"))
    # an instance admin may list any project's keys
    r = gateway.admin("GET", f"/api/v1/projects/{project.id}/api-keys")
    assert r.status_code == 200 and len(r.json()["data"]) == 4


def _cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, Any]:
    """Exit code and: the JSON printed (with --json), else stdout, or stderr on failure."""
    code = cli.main(list(argv))
    out = capsys.readouterr()
    if code != 0:
        return code, out.err
    return code, orjson.loads(out.out) if "--json" in argv else out.out


def test_cli_create_list_revoke(gateway: Gateway, capsys: pytest.CaptureFixture[str]) -> None:
    db = ["--database-url", gateway.settings.database_url]
    code, made = _cli(capsys, "project", "create", "cli", "--json", *db)
    assert code == 0
    project_id = made["project_id"]
    code, key = _cli(
        capsys,
        *("apikey", "create", "--project", project_id, "--role", "viewer", "--broadcast"),
        *("--name", "ro", "--json", *db),
    )
    assert code == 0 and key["role"] == "viewer" and key["broadcast"] is True
    assert key["api_key"].startswith("CO.")
    viewer = Project(gateway, project_id, key["api_key"])
    assert viewer.call("GET", "/endpoints").status_code == 200
    assert viewer.call("POST", "/endpoints", json={"url": "http://127.0.0.1:9/"}).status_code == 403

    code, listed = _cli(capsys, "apikey", "list", "--project", project_id, "--json", *db)
    assert code == 0 and len(listed) == 2
    mine = next(k for k in listed if k["key_id"] == key["key_id"])
    assert mine["status"] == "active" and mine["name"] == "ro" and mine["broadcast"] is True
    assert not _SECRET_FIELDS & set(mine)
    assert key["api_key"].split(".")[2] not in orjson.dumps(listed).decode()
    code, everything = _cli(capsys, "apikey", "list", "--json", *db)
    assert code == 0 and {k["key_id"] for k in listed} <= {k["key_id"] for k in everything}

    code, revoked = _cli(capsys, "apikey", "revoke", key["key_id"], "--json", *db)
    assert code == 0 and revoked["status"] == "revoked" and revoked["revoked_at"]
    # another process (the gateway) stops accepting it within its one-second cache
    started = time.monotonic()
    assert wait_until(lambda: viewer.call("GET", "/endpoints").status_code == 401, timeout=5)
    assert time.monotonic() - started < 2.5
    code, text = _cli(capsys, "apikey", "list", "--project", project_id, *db)
    assert code == 0 and f"{key['key_id']}  viewer broadcast  revoked" in text

    code, err = _cli(capsys, "apikey", "revoke", "01ARZ3NDEKTSV4RRFFQ69G5FAV", *db)
    assert code == 2 and "not found" in err
    code, err = _cli(capsys, "apikey", "list", "--project", "01ARZ3NDEKTSV4RRFFQ69G5FAV", *db)
    assert code == 2 and "not found" in err


@pytest.fixture(params=["sqlite", "postgres"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'keys.db'}"
        migrate.upgrade(url)
        yield url
    else:
        with fresh_database("hookcast_keys") as url:
            yield url


async def test_store_lists_and_revokes_keys(store_url: str) -> None:
    store = bootstrap.build_store(Settings(database_url=store_url))
    await store.open()
    try:
        project, first, _ = await admin.create_project(store.records, "p")
        other, _, _ = await admin.create_project(store.records, "q")
        viewer, _ = await admin.create_api_key(
            store.records, project_id=project.id, role=KeyRole.VIEWER
        )
        root, _ = await admin.create_api_key(
            store.records, project_id=None, role=KeyRole.INSTANCE_ADMIN
        )
        assert [k.id for k in await store.records.list_api_keys(project.id)] == [
            first.id,
            viewer.id,
        ]
        everything = {k.id for k in await store.records.list_api_keys(None)}
        assert {first.id, viewer.id, root.id} <= everything and len(everything) == 4
        # scoped to another project: not found, not revoked
        assert await store.records.revoke_api_key(viewer.id, other.id, 5) is None
        revoked = await store.records.revoke_api_key(viewer.id, project.id, 7)
        assert revoked is not None and revoked.revoked_at_us == 7
        again = await admin.revoke_api_key(store.records, viewer.id, clock=lambda: 9)
        assert again.revoked_at_us == 7  # the first revocation stands
        found = await store.records.find_api_key(viewer.mask)
        assert found is not None and found[0].revoked_at_us == 7
        assert (await store.records.revoke_api_key(root.id, None, 11)) is not None
        with pytest.raises(NotFoundError):
            await admin.revoke_api_key(store.records, "01ARZ3NDEKTSV4RRFFQ69G5FAV")
        states = {k.id: admin.key_state(k, 10) for k in await store.records.list_api_keys(None)}
        assert states[viewer.id] == "revoked" and states[first.id] == "active"
    finally:
        await store.close()
