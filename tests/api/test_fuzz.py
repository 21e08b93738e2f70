"""Fuzzing the live API from the OpenAPI document it serves, with schemathesis.

Every operation of ``/openapi.json`` gets generated requests (valid and invalid bodies and
query strings; real ids of a fresh project or made-up ones) sent with the instance admin
key, against the SQLite and the PostgreSQL store: every answer must be JSON in the
envelope, and never a 5xx. Hand-picked hostile requests (each once a 5xx) run beside them.

CI runs a small slice (``FUZZ_CI_EXAMPLES`` cases per operation and store, derandomized:
well under a minute). The dedicated run, random, a few thousand cases per store::

    HOOKCAST_FUZZ_EXAMPLES=150 .venv/bin/pytest tests/api/test_fuzz.py -q -s

(``HOOKCAST_FUZZ_EXAMPLES`` cases per operation, ~40 operations, each store;
``-k sqlite`` or ``-k postgres`` picks one; ``-s`` shows the count of cases and statuses
sent to each store.) A failure prints the request as a curl command to replay.

The gateway runs the API only: no delivery worker, so no generated URL is ever called.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode

from hookcast import bootstrap
from hookcast.api.app import ALL_ROUTES
from hookcast.api.openapi import build_openapi
from pg_support import fresh_database
from support import ADMIN_KEY, LoopThread, make_settings

FUZZ_CI_EXAMPLES = 25
EXAMPLES = int(os.environ.get("HOOKCAST_FUZZ_EXAMPLES") or FUZZ_CI_EXAMPLES)
DEDICATED = bool(os.environ.get("HOOKCAST_FUZZ_EXAMPLES"))
AUTH = {"Authorization": f"Bearer {ADMIN_KEY}"}
MISSING = "01ARZ3NDEKTSV4RRFFQ69G5FAV"

#: (method, path) of every operation, from the same route table the server serves
OPERATIONS = [
    (method.upper(), path)
    for path, item in build_openapi(ALL_ROUTES)["paths"].items()
    for method in item
]


class ApiOnly:
    """The API alone (no worker), on its own loop thread."""

    def __init__(self, database_url: str) -> None:
        self.statuses: Counter[int] = Counter()
        self.settings = make_settings("unused", database_url=database_url, api_rate_limit=0)
        self.base = f"http://{self.settings.host}:{self.settings.port}"
        self._thread = LoopThread("fuzz-gateway")
        bootstrap.run_migrations(self.settings)
        self._running = self._thread.run(bootstrap.start(self.settings, worker=False))

    def stop(self) -> None:
        self._thread.run(bootstrap.stop(self._running))
        self._thread.close()

    def call(self, method: str, path: str, **kw: Any) -> Any:
        r = requests.request(method, self.base + path, headers=AUTH, timeout=10, **kw)
        assert r.status_code < 300, r.text
        return r.json()["data"]

    def seed(self) -> dict[str, str]:
        """A fresh project with one of everything: what a destructive case breaks is its
        own. Gives the ids by path parameter name."""
        project = self.call("POST", "/api/v1/projects", json={"name": "fuzz"})["project"]["uid"]
        p = f"/api/v1/projects/{project}"
        endpoint = self.call(
            "POST", p + "/endpoints", json={"url": "http://127.0.0.1:9/", "name": "e"}
        )
        sub = self.call(
            "POST", p + "/subscriptions", json={"name": "s", "endpoint_id": endpoint["uid"]}
        )
        event = self.call(
            "POST",
            p + "/events",
            json={"endpoint_id": endpoint["uid"], "event_type": "t", "data": {"n": 1}},
        )
        deliveries = self.call("GET", p + "/eventdeliveries")["content"]
        job = self.call("POST", p + "/eventdeliveries/batchretry")
        key = self.call("POST", p + "/api-keys", json={"role": "viewer"})
        event_type = self.call(
            "POST",
            p + "/event-types",
            json={"name": "t", "json_schema": {"type": "object"}, "example": {"n": 1}},
        )
        link = self.call(
            "POST", p + "/portal-links", json={"name": "l", "owner_id": "o", "endpoints": []}
        )
        return {
            "project_id": project,
            "endpoint_id": endpoint["uid"],
            "subscription_id": sub["uid"],
            "event_id": event["uid"],
            "delivery_id": deliveries[0]["uid"],
            "attempt_id": MISSING,  # no worker, no attempts
            "job_id": job["uid"],
            "key_id": key["uid"],
            "event_type_id": event_type["uid"],
            "portal_link_id": link["uid"],
        }


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def api(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ApiOnly]:
    if request.param == "sqlite":
        gw = ApiOnly(f"sqlite:///{tmp_path_factory.mktemp('fuzz') / 'hookcast.db'}")
        yield gw
        gw.stop()
    else:
        with fresh_database("hookcast_fuzz", migrated=False) as url:
            gw = ApiOnly(url)
            yield gw
            gw.stop()
    if DEDICATED:
        total = sum(gw.statuses.values())
        print(f"\nfuzz[{request.param}]: {total} generated cases, statuses {dict(gw.statuses)}")


@pytest.fixture(scope="module")
def schema(api: ApiOnly) -> Any:
    loaded = schemathesis.openapi.from_url(api.base + "/openapi.json")
    served = {(m.upper(), p) for p, item in loaded.raw_schema["paths"].items() for m in item}
    assert served == set(OPERATIONS)
    return loaded


def _check(status: int, content_type: str, content: bytes, replay: str) -> None:
    """No 5xx; JSON in the envelope; errors carry no ``data``."""
    assert status < 500, f"{status} {content[:500]!r}\n{replay}"
    assert content_type.startswith("application/json"), f"{status} {content_type!r}\n{replay}"
    body = orjson.loads(content)
    assert isinstance(body, dict) and isinstance(body.get("message"), str), replay
    if body.get("status") is True:
        assert "data" in body and status < 300, replay
    else:
        assert body.get("status") is False and "data" not in body, f"{body}\n{replay}"
        assert 400 <= status < 500, replay


@pytest.mark.parametrize(("method", "path"), OPERATIONS, ids=[f"{m} {p}" for m, p in OPERATIONS])
def test_fuzz_operation(api: ApiOnly, schema: Any, method: str, path: str) -> None:
    ids = api.seed()
    operation = schema[path][method]
    wanted = {name: ids[name] for name in ids if "{" + name + "}" in path}
    project_only = {"project_id": ids["project_id"]}
    strategy = st.one_of(
        operation.as_strategy(GenerationMode.POSITIVE, path_parameters=wanted),
        operation.as_strategy(GenerationMode.NEGATIVE, path_parameters=wanted),
        operation.as_strategy(GenerationMode.POSITIVE, path_parameters=project_only),
    )
    session = requests.Session()

    @given(case=strategy)
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        derandomize=not DEDICATED,
        suppress_health_check=list(HealthCheck),
        print_blob=DEDICATED,
    )
    def run(case: Any) -> None:
        response = case.call(base_url=api.base, session=session, headers=AUTH, timeout=10)
        content_type = (response.headers.get("content-type") or [""])[0]  # lowercase, lists
        replay = case.as_curl_command(headers=AUTH)
        api.statuses[response.status_code] += 1
        _check(response.status_code, content_type, response.content, replay)

    try:
        run()
    finally:
        session.close()


_LONG_URL = "http://127.0.0.1:9/" + "a" * 400


def _nested(levels: int) -> Any:
    doc: Any = 1
    for _ in range(levels):
        doc = [doc]
    return doc


#: requests that once got a 5xx, by what they broke: (method, path, JSON body)
HOSTILE: list[tuple[str, str, str, Any]] = [
    ("nul-in-path", "GET", "/endpoints/%00", None),
    ("nul-in-query", "GET", "/events?query=%00&idempotencyKey=%00", None),
    ("nul-in-key-id", "DELETE", "/api-keys/%00", None),
    ("nul-in-name", "POST", "/endpoints", {"url": "http://127.0.0.1:9/", "name": "a\x00"}),
    ("nul-in-owner", "POST", "/events/fanout", {"owner_id": "\x00", "event_type": "x", "data": 1}),
    ("nul-in-key-name", "POST", "/api-keys", {"name": "\x00"}),
    ("nul-in-ids", "POST", "/eventdeliveries/forceresend", {"ids": ["\x00"]}),
    ("nul-in-link-owner", "POST", "/portal-links", {"name": "l", "owner_id": "\x00"}),
    ("nul-in-link-query", "GET", "/portal-links?q=%00&ownerId=%00", None),
    ("bad-whsk-update", "PUT", "/endpoints/{endpoint_id}", {"secret": "whsk_xx"}),
    ("bad-whsk-expire", "PUT", "/endpoints/{endpoint_id}/expire_secret", {"secret": "whsk_!"}),
    ("int32-rate-limit", "PUT", "/endpoints/{endpoint_id}", {"rate_limit": 2**31}),
    ("int64-duration", "POST", "/endpoints", {"url": "http://a/", "rate_limit_duration": 2**63}),
    ("long-url-no-name", "POST", "/endpoints", {"url": _LONG_URL}),
    (
        "long-url-dynamic",
        "POST",
        "/events/dynamic",
        {"url": _LONG_URL, "event_type": "x", "data": 1},
    ),
    (
        "deep-json",
        "POST",
        "/events",
        {"endpoint_id": "{endpoint_id}", "event_type": "x", "data": _nested(300)},
    ),
]


@pytest.mark.parametrize(("name", "method", "path", "body"), HOSTILE, ids=[h[0] for h in HOSTILE])
def test_hostile_requests(
    api: ApiOnly, request: pytest.FixtureRequest, name: str, method: str, path: str, body: Any
) -> None:
    ids = api.seed()
    url = f"{api.base}/api/v1/projects/{ids['project_id']}" + path.format(**ids)
    # json, not orjson: orjson cannot write the 300 levels of deep-json
    data = json.dumps(body).replace('"{endpoint_id}"', json.dumps(ids["endpoint_id"]))
    r = requests.request(
        method,
        url,
        data=data if body is not None else None,
        headers={**AUTH, "Content-Type": "application/json"},
        timeout=10,
    )
    _check(r.status_code, r.headers.get("Content-Type", ""), r.content, f"{name}: {method} {url}")
    # nothing broken left behind: the endpoint still reads
    endpoint = f"{api.base}/api/v1/projects/{ids['project_id']}/endpoints/{ids['endpoint_id']}"
    assert requests.get(endpoint, headers=AUTH, timeout=10).status_code == 200


def test_fuzz_covers_every_route() -> None:
    assert len(OPERATIONS) == len(ALL_ROUTES) >= 35
