"""Who may read /metrics: HOOKCAST_METRICS_TOKEN (a bearer token) and
HOOKCAST_METRICS_ADDRESS (a listener of its own instead of the API port)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest
import requests
from pydantic import ValidationError

from hookcast import bootstrap
from hookcast.metrics import is_loopback
from hookcast.settings import Settings
from support import Gateway, free_port, make_settings

TOKEN = "metrics-token-0123456789"


def get_metrics(base: str, token: str | None = None, scheme: str = "Bearer") -> requests.Response:
    headers = {"Authorization": f"{scheme} {token}"} if token is not None else {}
    return requests.get(base + "/metrics", headers=headers, timeout=10)


def assert_refused(r: requests.Response) -> None:
    assert r.status_code == 401, r.text
    assert r.headers["Content-Type"].startswith("application/json")
    assert r.headers["WWW-Authenticate"].startswith("Bearer")
    body = r.json()
    assert body["status"] is False
    assert "Authorization: Bearer" in body["message"]
    assert "HOOKCAST_METRICS_TOKEN" in body["message"]
    assert "hookcast_" not in r.text and TOKEN not in r.text


def assert_served(r: requests.Response) -> None:
    assert r.status_code == 200, r.text
    assert r.headers["Content-Type"].startswith("text/plain")
    assert "hookcast_deliveries_total" in r.text


@pytest.fixture
def guarded(tmp_path: Path) -> Iterator[Gateway]:
    gw = Gateway(make_settings(str(tmp_path / "g.db"), metrics_token=TOKEN))
    yield gw
    gw.stop()


def test_a_token_guards_metrics_on_the_api_port(guarded: Gateway) -> None:
    guarded.create_project("secret-project")  # its id must not leak
    assert_refused(get_metrics(guarded.base))
    assert_refused(get_metrics(guarded.base, "wrong"))
    assert_refused(get_metrics(guarded.base, TOKEN[:-1]))
    assert_refused(get_metrics(guarded.base, TOKEN + "x"))
    assert_refused(get_metrics(guarded.base, TOKEN, scheme="Basic"))
    assert_refused(get_metrics(guarded.base, "\u00e9t\u00e9"))  # not ASCII: no crash
    assert_served(get_metrics(guarded.base, TOKEN))
    assert_served(get_metrics(guarded.base, TOKEN, scheme="bearer"))
    # the rest of the API is not affected
    assert requests.get(guarded.base + "/health", timeout=10).status_code == 200
    assert guarded.admin("GET", "/api/v1/projects").status_code == 200


def test_by_default_metrics_stay_open_on_the_api_port(gateway: Gateway) -> None:
    assert_served(get_metrics(gateway.base))
    assert_served(get_metrics(gateway.base, "any token at all"))


def test_an_address_moves_metrics_off_the_api_port(tmp_path: Path) -> None:
    port = free_port()
    settings = make_settings(str(tmp_path / "a.db"), metrics_address=f"127.0.0.1:{port}")
    gw = Gateway(settings)
    try:
        r = get_metrics(gw.base)
        assert r.status_code == 404
        assert r.headers["Content-Type"].startswith("application/json")
        assert r.json()["status"] is False
        assert_served(get_metrics(f"http://127.0.0.1:{port}"))
        # ingest still counts on the registry served elsewhere
        gw.create_project("p")
        assert requests.get(gw.base + "/health", timeout=10).status_code == 200
    finally:
        gw.stop()
    with pytest.raises(requests.ConnectionError):  # and it is closed on stop
        get_metrics(f"http://127.0.0.1:{port}")


def test_an_address_and_a_token_together(tmp_path: Path) -> None:
    port = free_port()
    settings = make_settings(
        str(tmp_path / "b.db"), metrics_address=f"127.0.0.1:{port}", metrics_token=TOKEN
    )
    gw = Gateway(settings)
    try:
        other = f"http://127.0.0.1:{port}"
        assert get_metrics(gw.base, TOKEN).status_code == 404
        assert_refused(get_metrics(other))
        assert_refused(get_metrics(other, "wrong"))
        assert_served(get_metrics(other, TOKEN))
    finally:
        gw.stop()


async def test_the_worker_only_listener_honours_the_token(tmp_path: Path) -> None:
    port = free_port()
    settings = make_settings(str(tmp_path / "w.db"), metrics_port=port, metrics_token=TOKEN)
    bootstrap.run_migrations(settings)
    running = await bootstrap.start(settings, api=False, worker=True)
    url = f"http://{settings.host}:{port}/metrics"
    try:
        async with aiohttp.ClientSession() as http:
            for headers in ({}, {"Authorization": "Bearer wrong"}):
                async with http.get(url, headers=headers) as r:
                    assert r.status == 401
                    assert r.content_type == "application/json"
                    body = await r.json()
                    assert body["status"] is False and "Bearer" in body["message"]
            async with http.get(url, headers={"Authorization": f"Bearer {TOKEN}"}) as r:
                assert r.status == 200
                assert "hookcast_deliveries_total" in await r.text()
    finally:
        await bootstrap.stop(running)


async def test_a_worker_only_process_ignores_the_metrics_address(tmp_path: Path) -> None:
    # serve --workers N hands its environment to every child: they must not all bind it
    address_port = free_port()
    settings = make_settings(
        str(tmp_path / "x.db"), metrics_address=f"127.0.0.1:{address_port}", metrics_port=0
    )
    bootstrap.run_migrations(settings)
    running = await bootstrap.start(settings, api=False, worker=True)
    try:
        assert running.metrics_runner is None
    finally:
        await bootstrap.stop(running)


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.getMessage() == "metrics.unprotected"]


@pytest.mark.parametrize(
    ("host", "overrides", "warned"),
    [
        ("0.0.0.0", {}, True),
        ("0.0.0.0", {"metrics_token": TOKEN}, False),
        ("0.0.0.0", {"metrics_address": "127.0.0.1:{port}"}, False),
        ("0.0.0.0", {"metrics_enabled": False}, False),
        ("127.0.0.1", {}, False),
    ],
)
async def test_open_metrics_on_a_public_api_port_are_warned_about(
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    host: str,
    overrides: dict[str, object],
    warned: bool,
) -> None:
    values = {
        k: v.format(port=free_port()) if isinstance(v, str) else v for k, v in overrides.items()
    }
    settings = make_settings(str(tmp_path / "h.db"), host=host, **values)
    bootstrap.run_migrations(settings)
    running = await bootstrap.start(settings, api=True, worker=False)
    try:
        assert _warnings(caplog) == (["metrics.unprotected"] if warned else [])
    finally:
        await bootstrap.stop(running)


def test_loopback_hosts() -> None:
    assert all(is_loopback(h) for h in ("127.0.0.1", "127.1.2.3", "::1", "localhost"))
    assert not any(is_loopback(h) for h in ("0.0.0.0", "::", "10.0.0.5", "", "example.com"))


def test_the_metrics_settings_are_validated() -> None:
    for good, want in [
        ("127.0.0.1:9464", ("127.0.0.1", 9464)),
        ("0.0.0.0:1", ("0.0.0.0", 1)),
        ("[::1]:65535", ("::1", 65535)),
        ("metrics.internal:9100", ("metrics.internal", 9100)),
    ]:
        assert Settings(metrics_address=good).metrics_listen_address() == want
    assert Settings().metrics_listen_address() is None
    for bad in (
        "9464",
        ":9464",
        "127.0.0.1:",
        "127.0.0.1:0",
        "127.0.0.1:65536",
        "host:http",
        "::1:9464",
        "127.0.0.1:\u00b2",
    ):
        with pytest.raises(ValidationError, match="HOOKCAST_METRICS_ADDRESS"):
            Settings(metrics_address=bad)
    for bad_token in ("token\n", " token", "to ken", "tok\x00en"):
        with pytest.raises(ValidationError, match="HOOKCAST_METRICS_TOKEN"):
            Settings(metrics_token=bad_token)
