"""The wire contract: envelope, status codes, auth, bad input, pagination, OpenAPI."""

from __future__ import annotations

import json

import requests

from support import ADMIN_KEY, Gateway, Project


def _j(doc: object) -> bytes:
    return json.dumps(doc).encode()


def test_every_error_is_a_json_envelope_without_data(gateway: Gateway, project: Project) -> None:
    cases = [
        requests.get(gateway.base + "/nope", timeout=5),
        requests.get(gateway.base + "/api/v1/projects/x/endpoints", timeout=5),
        project.call("GET", "/endpoints/01ARZ3NDEKTSV4RRFFQ69G5FAV"),
        project.call("DELETE", "/nothing/here"),
        project.call("PATCH", "/endpoints"),
    ]
    assert [r.status_code for r in cases] == [404, 401, 404, 404, 405]
    for r in cases:
        assert r.headers["Content-Type"].startswith("application/json")
        body = r.json()
        assert body["status"] is False and isinstance(body["message"], str)
        assert "data" not in body


def test_auth_header_forms(gateway: Gateway, project: Project) -> None:
    url = project.base + "/endpoints"
    missing = requests.get(url, timeout=5)
    assert missing.status_code == 401 and missing.json()["message"] == "Authentication required"
    for header in ("Bearer", "Token " + project.key, "Bearer  " + project.key, "bearer x y"):
        assert requests.get(url, headers={"Authorization": header}, timeout=5).status_code == 401
    # a key of the right form that this server never made: Convoy's message, then why
    # (most often: made by the CLI against another database file)
    wrong = requests.get(url, headers={"Authorization": "Bearer CO.abc.def"}, timeout=5)
    message = wrong.json()["message"]
    assert wrong.status_code == 401 and message.startswith("authorization failed: ")
    assert "no such key" in message and "--database-url" in message
    # the right key id with a wrong secret gives nothing away
    mask = project.key.split(".")[1]
    guess = requests.get(url, headers={"Authorization": f"Bearer CO.{mask}.x"}, timeout=5)
    assert guess.status_code == 401 and guess.json()["message"] == "authorization failed"
    lower = requests.get(url, headers={"Authorization": "bearer " + project.key}, timeout=5)
    assert lower.status_code == 200


def test_another_projects_key_sees_nothing(gateway: Gateway, project: Project) -> None:
    other = gateway.create_project("other")
    ep = project.endpoint("http://127.0.0.1:9/a")
    r = requests.get(
        f"{project.base}/endpoints/{ep['uid']}",
        headers={"Authorization": f"Bearer {other.key}"},
        timeout=5,
    )
    assert r.status_code == 404 and "data" not in r.json()
    r = requests.delete(
        f"{project.base}/endpoints/{ep['uid']}",
        headers={"Authorization": f"Bearer {other.key}"},
        timeout=5,
    )
    assert r.status_code == 404
    assert project.ok("GET", f"/endpoints/{ep['uid']}")["uid"] == ep["uid"]
    # the other project's own URL with its own key cannot reach our endpoint either
    r = other.call("GET", f"/endpoints/{ep['uid']}")
    assert r.status_code == 404


def test_status_codes_follow_convoy(project: Project) -> None:
    created = project.call("POST", "/endpoints", json={"url": "http://127.0.0.1:9/x", "name": "x"})
    assert created.status_code == 201
    uid = created.json()["data"]["uid"]
    assert project.call("GET", f"/endpoints/{uid}").status_code == 200
    assert project.call("PUT", f"/endpoints/{uid}", json={"name": "y"}).status_code == 202
    paused = project.call("PUT", f"/endpoints/{uid}/pause")
    assert paused.status_code == 202 and paused.json()["data"]["status"] == "paused"
    active = project.call("POST", f"/endpoints/{uid}/activate")
    assert active.status_code == 202 and active.json()["data"]["status"] == "active"
    deleted = project.call("DELETE", f"/endpoints/{uid}", json={})
    assert deleted.status_code == 200 and deleted.json()["data"] is None
    assert project.call("GET", f"/endpoints/{uid}").status_code == 404


def test_trailing_slash_and_charset_content_type(project: Project) -> None:
    r = project.call(
        "POST",
        "/endpoints/",
        data=b'{"url": "http://127.0.0.1:9/x", "name": "x"}',
        headers={"Content-Type": "application/json; charset=utf-8"},
    )
    assert r.status_code == 201
    assert project.call("GET", "/endpoints/").status_code == 200


def test_wrong_content_type_is_415_json(project: Project) -> None:
    r = project.call("POST", "/endpoints", data=b"url=x", headers={"Content-Type": "text/plain"})
    assert r.status_code == 415 and r.json()["status"] is False
    assert project.ok("GET", "/endpoints")["content"] == []


def test_bad_input_is_4xx_and_writes_nothing(project: Project) -> None:
    ep = project.endpoint("http://127.0.0.1:9/x")
    e = ep["uid"]
    missing = "01ARZ3NDEKTSV4RRFFQ69G5FAV"
    bad_filter = {"filter": {"body": {"a": {"$bogus": 1}}}}
    bad: list[tuple[str, str, bytes]] = [
        ("POST", "/endpoints", b"{not json"),
        ("POST", "/endpoints", b""),
        ("POST", "/endpoints", b"[1, 2]"),
        ("POST", "/endpoints", b'{"name": "no url"}'),
        ("POST", "/endpoints", b'{"url": "ftp://example.com/x", "name": "x"}'),
        ("POST", "/endpoints", b'{"url": "http://127.0.0.1:9/x", "http_timeout": "soon"}'),
        ("POST", "/endpoints", b'{"url": "http://127.0.0.1:9/x", "support_email": "nope"}'),
        ("POST", "/events", b'{"event_type": "a", "data": {}}'),
        ("POST", "/events", _j({"endpoint_id": e, "data": {}})),
        ("POST", "/events", _j({"endpoint_id": e, "event_type": "a"})),
        ("POST", "/events", _j({"endpoint_id": missing, "event_type": "a", "data": 1})),
        (
            "POST",
            "/events",
            _j(
                {
                    "endpoint_id": e,
                    "event_type": "a",
                    "data": 1,
                    "custom_headers": {"bad header": "x"},
                }
            ),
        ),
        ("POST", "/events/fanout", b'{"event_type": "a", "data": 1}'),
        ("POST", "/subscriptions", b'{"name": "s"}'),
        ("POST", "/subscriptions", _j({"name": "s", "endpoint_id": missing})),
        (
            "POST",
            "/subscriptions",
            _j({"name": "s", "endpoint_id": e, "filter_config": bad_filter}),
        ),
    ]
    for method, path, raw in bad:
        r = project.call(method, path, data=raw, headers={"Content-Type": "application/json"})
        assert 400 <= r.status_code < 500, (path, raw, r.status_code, r.text)
        body = r.json()
        assert body["status"] is False and body["message"], (path, raw)
    assert len(project.ok("GET", "/endpoints")["content"]) == 1
    assert project.ok("GET", "/events")["content"] == []
    assert project.ok("GET", "/subscriptions")["content"] == []
    assert project.deliveries() == []


def test_body_over_the_limit_is_413(gateway: Gateway, project: Project) -> None:
    limit = gateway.settings.max_body_bytes
    ep = project.endpoint("http://127.0.0.1:9/x")
    big = b'{"endpoint_id": "%s", "event_type": "a", "data": "%s"}' % (
        ep["uid"].encode(),
        b"x" * limit,
    )
    r = project.call("POST", "/events", data=big, headers={"Content-Type": "application/json"})
    assert r.status_code == 413 and r.json()["status"] is False
    assert project.ok("GET", "/events")["content"] == []


def test_pagination_with_empty_params_and_cursors(project: Project) -> None:
    ids = [project.endpoint(f"http://127.0.0.1:9/{i}")["uid"] for i in range(5)]
    newest_first = list(reversed(ids))
    page = project.ok(
        "GET",
        "/endpoints",
        params={
            "perPage": 2,
            "next_page_cursor": "",
            "prev_page_cursor": "",
            "direction": "",
            "page": 1,
            "q": "",
            "ownerId": "",
        },
    )
    assert [e["uid"] for e in page["content"]] == newest_first[:2]
    pg = page["pagination"]
    assert pg["per_page"] == 2 and pg["has_next_page"] and not pg["has_prev_page"]
    page2 = project.ok(
        "GET", "/endpoints", params={"perPage": 2, "next_page_cursor": pg["next_page_cursor"]}
    )
    assert [e["uid"] for e in page2["content"]] == newest_first[2:4]
    back = project.ok(
        "GET",
        "/endpoints",
        params={
            "perPage": 2,
            "direction": "prev",
            "prev_page_cursor": page2["pagination"]["prev_page_cursor"],
        },
    )
    assert [e["uid"] for e in back["content"]] == newest_first[:2]
    junk = project.ok("GET", "/endpoints", params={"perPage": "lots"})
    assert junk["pagination"]["per_page"] == 20
    assert (
        project.call("GET", "/endpoints", params={"next_page_cursor": "not-a-cursor"}).status_code
        == 400
    )
    assert project.call("GET", "/events", params={"startDate": "yesterday"}).status_code == 400


def test_lists_are_never_null(project: Project) -> None:
    for path in ("/endpoints", "/subscriptions", "/events", "/eventdeliveries"):
        data = project.ok("GET", path)
        assert data["content"] == []


def test_go_client_zero_dates_and_repeated_filters(project: Project, receiver) -> None:  # type: ignore[no-untyped-def]
    ep = project.endpoint(receiver.url + "/a")
    project.publish(ep["uid"])
    params = [
        ("startDate", "0001-01-01T00:00:00"),
        ("endDate", "0001-01-01T00:00:00"),
        ("endpointId", ep["uid"]),
        ("endpointId", "01ARZ3NDEKTSV4RRFFQ69G5FAV"),
        ("query", ""),
        ("idempotencyKey", ""),
        ("sourceId", ""),
    ]
    events = project.ok("GET", "/events", params=params)["content"]
    assert len(events) == 1
    deliveries = project.ok(
        "GET",
        "/eventdeliveries",
        params=[*params, ("status", "Scheduled"), ("status", "Processing"), ("status", "Success")],
    )
    assert len(deliveries["content"]) == 1


def test_openapi_document_lists_the_routes(gateway: Gateway) -> None:
    doc = requests.get(gateway.base + "/openapi.json", timeout=5).json()
    assert doc["openapi"].startswith("3.")
    paths = doc["paths"]
    assert "post" in paths["/api/v1/projects/{project_id}/events"]
    assert (
        "get"
        in paths["/api/v1/projects/{project_id}/eventdeliveries/{delivery_id}/deliveryattempts"]
    )
    assert "CreateEvent" in doc["components"]["schemas"]


def test_projects_need_the_instance_admin_key(gateway: Gateway, project: Project) -> None:
    r = requests.post(
        gateway.base + "/api/v1/projects",
        json={"name": "x"},
        headers={"Authorization": f"Bearer {project.key}"},
        timeout=5,
    )
    assert r.status_code == 403
    listed = gateway.admin("GET", "/api/v1/projects").json()["data"]
    assert project.id in [p["uid"] for p in listed]
    updated = gateway.admin(
        "PUT", f"/api/v1/projects/{project.id}", json={"config": {"strategy": {"retry_count": 3}}}
    )
    assert updated.status_code == 202
    cfg = updated.json()["data"]["config"]
    assert cfg["strategy"]["retry_count"] == 3 and cfg["strategy"]["type"] == "exponential"
    own = project.ok("GET", "")
    assert own["config"]["strategy"]["retry_count"] == 3
    bad = gateway.admin(
        "PUT", f"/api/v1/projects/{project.id}", json={"config": {"strategy": {"type": "sideways"}}}
    )
    assert bad.status_code == 400
    assert gateway.admin("DELETE", f"/api/v1/projects/{project.id}").status_code == 200
    assert gateway.admin("GET", f"/api/v1/projects/{project.id}").status_code == 404
    assert project.call("GET", "/endpoints").status_code in (401, 404)


def test_health_and_ready(gateway: Gateway) -> None:
    assert requests.get(gateway.base + "/health", timeout=5).json()["status"] is True
    ready = requests.get(gateway.base + "/ready", timeout=5)
    assert ready.status_code == 200 and ready.json()["data"]["status"] == "ready"


def test_admin_key_from_settings_is_accepted(gateway: Gateway) -> None:
    r = requests.get(
        gateway.base + "/api/v1/projects",
        headers={"Authorization": f"Bearer {ADMIN_KEY}"},
        timeout=5,
    )
    assert r.status_code == 200
