"""Every API field that becomes a header of a delivery refuses control characters (400,
nothing changed), and what it accepts reaches the receiver as one clean request."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from support import Gateway, Project, wait_until
from zoo import Zoo

BAD = ["a\r\nX-Smuggled: 1", "a\nb", "a\rb", "a\x00b", "\x7f"]
_LINE = re.compile(rb"[!#$%&'*+.^_`|~0-9A-Za-z-]+: [^\x00-\x08\x0a-\x1f\x7f]*")


@pytest.fixture(scope="module")
def zoo() -> Iterator[Zoo]:
    z = Zoo()
    yield z
    z.stop()


def _auth(name: str = "X-Api-Key", value: str = "secret") -> dict[str, Any]:
    return {"type": "api_key", "api_key": {"header_name": name, "header_value": value}}


def _refused(project: Project, method: str, path: str, body: dict[str, Any], field: str) -> None:
    r = project.call(method, path, json=body)
    assert r.status_code == 400, (body, r.text)
    message = r.json()["message"]
    assert field in message or "NUL" in message, r.text  # NUL is refused before any field


@pytest.mark.parametrize("bad", BAD)
def test_every_header_field_refuses_control_characters(
    project: Project, zoo: Zoo, bad: str
) -> None:
    ep = project.endpoint(zoo.url + "/good/fields")
    publish = {"endpoint_id": ep["uid"], "event_type": "t", "data": {}}
    _refused(project, "POST", "/events", {**publish, "idempotency_key": bad}, "idempotency_key")
    _refused(
        project, "POST", "/events", {**publish, "custom_headers": {"X-A": bad}}, "custom_headers"
    )
    _refused(
        project, "POST", "/events", {**publish, "custom_headers": {bad: "v"}}, "custom_headers"
    )
    for kind in ("fanout", "broadcast", "dynamic"):
        r = project.call("POST", f"/events/{kind}", json={**publish, "idempotency_key": bad})
        assert r.status_code in (400, 403), r.text  # 403: this key may not broadcast
    _refused(
        project,
        "POST",
        "/endpoints",
        {"url": zoo.url + "/x", "authentication": _auth(value=bad)},
        "header_value",
    )
    _refused(
        project,
        "PUT",
        f"/endpoints/{ep['uid']}",
        {"authentication": _auth(name=bad)},
        "header_name",
    )
    basic = {"type": "basic_auth", "basic_auth": {"username": bad, "password": "p"}}
    _refused(
        project, "POST", "/endpoints", {"url": zoo.url + "/x", "authentication": basic}, "username"
    )
    _refused(project, "PUT", "", {"config": {"request_id_header": bad}}, "request_id_header")
    _refused(project, "PUT", "", {"config": {"signature": {"header": bad}}}, "signature")
    # nothing changed: one endpoint, the default headers
    assert len(project.ok("GET", "/endpoints")["content"]) == 1
    config = project.ok("GET", "")["config"]
    assert config["request_id_header"] == "X-Convoy-Idempotency-Key"
    assert project.ok("GET", "/events")["content"] == []


@pytest.mark.parametrize("name", ["Content-Length", "Transfer-Encoding", "Host", "Connection"])
def test_framing_headers_are_not_configurable(project: Project, name: str) -> None:
    _refused(project, "PUT", "", {"config": {"request_id_header": name}}, "request_id_header")
    _refused(project, "PUT", "", {"config": {"signature": {"header": name}}}, "signature")
    _refused(
        project,
        "POST",
        "/endpoints",
        {"url": "http://h/x", "authentication": _auth(name)},
        "header_name",
    )


#: mostly printable text (accepted, so delivered), sometimes any character (refused)
TEXT = st.text(
    st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), min_size=1, max_size=20
).map(str.strip).filter(bool) | st.text(
    st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=1, max_size=20
)


DELIVERED: list[str] = []


@settings(
    max_examples=15,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    name=st.from_regex(r"X-[A-Za-z0-9-]{1,10}", fullmatch=True) | TEXT,
    value=TEXT,
    key=TEXT,
    auth_value=TEXT,
)
def test_accepted_values_reach_the_receiver_as_one_clean_request(
    gateway: Gateway, zoo: Zoo, name: str, value: str, key: str, auth_value: str
) -> None:
    project = gateway.create_project("wire")
    path = f"/good/wire/{project.id}"
    r = project.call(
        "POST",
        "/endpoints",
        json={"url": zoo.url + path, "authentication": _auth(value=auth_value)},
    )
    if r.status_code != 201:
        assert r.status_code == 400, r.text
        return
    ep = r.json()["data"]
    r = project.call(
        "POST",
        "/events",
        json={
            "endpoint_id": ep["uid"],
            "event_type": "t",
            "data": {},
            "idempotency_key": key,
            "custom_headers": {name: value},
        },
    )
    if r.status_code != 201:
        assert r.status_code == 400, r.text
        return
    assert wait_until(lambda: len(zoo.seen(path)) >= 1, 10)
    DELIVERED.append(path)
    [seen] = zoo.seen(path)
    for line in seen.head[:-4].split(b"\r\n")[1:]:
        assert _LINE.fullmatch(line), line
    assert zoo.unexpected == []


def test_the_property_above_delivered_some_examples() -> None:
    assert DELIVERED, "every example was refused: the property checked nothing on the wire"
