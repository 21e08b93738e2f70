"""``hookcast send`` and ``hookcast tail`` against a real gateway and receiver."""

from __future__ import annotations

import threading
from typing import Any

import orjson
import pytest

from hookcast import cli
from support import Gateway, Project, Receiver, free_port


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def remote(gateway: Gateway, project: Project) -> list[str]:
    return ["--project", project.id, "--url", gateway.base, "--key", project.key]


def test_send_publishes_to_one_endpoint(
    gateway: Gateway, project: Project, receiver: Receiver, capsys: pytest.CaptureFixture[str]
) -> None:
    ep = project.endpoint(receiver.url + "/cli")
    code, out, _ = run(
        capsys,
        "send",
        *remote(gateway, project),
        *("--endpoint", ep["uid"], "--type", "invoice.paid"),
        *("--data", '{"amount": 5}', "--header", "X-Trace: abc", "--json"),
    )
    assert code == 0
    event = orjson.loads(out)
    assert event["kind"] == "single" and event["deliveries"] == 1
    (got,) = receiver.wait_for("/cli", 1)
    assert orjson.loads(got.body) == {"amount": 5}
    assert got.headers["X-Trace"] == "abc"
    assert got.headers["X-Convoy-Event-ID"] == event["uid"]


def test_send_fans_out_and_broadcasts(
    gateway: Gateway,
    project: Project,
    receiver: Receiver,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Any,
) -> None:
    for path in ("/o1", "/o2"):
        ep = project.endpoint(receiver.url + path, owner_id="acme")
        body = {"name": "all", "endpoint_id": ep["uid"], "filter_config": {"event_types": ["*"]}}
        project.ok("POST", "/subscriptions", 201, json=body)
    payload = tmp_path / "payload.json"
    payload.write_bytes(b'{"from": "file"}')
    code, out, _ = run(
        capsys,
        "send",
        *remote(gateway, project),
        *("--owner", "acme", "--type", "t", "--data", f"@{payload}"),
    )
    assert code == 0
    assert "(fanout) queued: 2 deliveries" in out
    receiver.wait_for("/o1", 1)
    assert orjson.loads(receiver.wait_for("/o2", 1)[0].body) == {"from": "file"}

    key = project.ok("POST", "/api-keys", 201, json={"name": "b", "broadcast": True})["key"]
    code, out, _ = run(
        capsys,
        "send",
        *("--project", project.id, "--url", gateway.base, "--key", key),
        *("--broadcast", "--type", "news", "--data", "{}"),
    )
    assert code == 0 and "(broadcast) accepted" in out


def test_send_defaults_come_from_the_environment(
    gateway: Gateway,
    project: Project,
    receiver: Receiver,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ep = project.endpoint(receiver.url + "/env")
    monkeypatch.setenv("HOOKCAST_API_URL", gateway.base)
    monkeypatch.setenv("HOOKCAST_API_KEY", project.key)
    code, _, _ = run(
        capsys, "send", "--project", project.id, "--endpoint", ep["uid"], "--type", "t",
        "--data", "[1, 2]",
    )  # fmt: skip
    assert code == 0
    assert orjson.loads(receiver.wait_for("/env", 1)[0].body) == [1, 2]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--data", "{not json"], "--data is not valid JSON"),
        (["--data", "{}", "--key", "wrong"], "HTTP 401"),
        (["--data", "{}", "--url", f"http://127.0.0.1:{free_port()}"], "cannot reach"),
        (["--data", "{}", "--header", "no-colon"], "--header takes NAME:VALUE"),
    ],
)
def test_send_reports_problems_plainly(
    gateway: Gateway,
    project: Project,
    capsys: pytest.CaptureFixture[str],
    args: list[str],
    message: str,
) -> None:
    code, out, err = run(
        capsys,
        "send",
        *remote(gateway, project),
        *("--endpoint", "01HZZZZZZZZZZZZZZZZZZZZZZZ", "--type", "t"),
        *args,
    )
    assert code == 2 and out == ""
    assert err.startswith("hookcast: ") and message in err


def test_tail_shows_recent_deliveries_then_new_ones(
    gateway: Gateway, project: Project, receiver: Receiver, capsys: pytest.CaptureFixture[str]
) -> None:
    ep = project.endpoint(receiver.url + "/tail")
    old = [project.publish(ep["uid"], data={"i": i})["uid"] for i in range(3)]
    receiver.wait_for("/tail", 3)
    # publish while tail runs, from another thread
    new: list[str] = []
    timer = threading.Timer(0.4, lambda: new.append(project.publish(ep["uid"])["uid"]))
    timer.start()
    try:
        code, out, _ = run(
            capsys,
            "tail",
            *remote(gateway, project),
            *("--backlog", "2", "--interval", "0.05", "--seconds", "2"),
        )
    finally:
        timer.join()
    assert code == 0
    lines = out.splitlines()
    # the two newest of the backlog, oldest first; never the third
    assert f"event={old[1]}" in lines[0] and f"event={old[2]}" in lines[1]
    assert not any(f"event={old[0]}" in line for line in lines)
    assert sum(f"event={old[2]}" in line for line in lines) == 1
    # the new one is followed to its final status
    assert new and any(f"event={new[0]}" in line and " Success " in line for line in lines)
    assert all(f"endpoint={ep['uid']}" in line for line in lines)


def test_tail_stops_after_max_lines_and_speaks_json(
    gateway: Gateway, project: Project, receiver: Receiver, capsys: pytest.CaptureFixture[str]
) -> None:
    ep = project.endpoint(receiver.url + "/j")
    for _ in range(5):
        project.publish(ep["uid"])
    receiver.wait_for("/j", 5)
    code, out, _ = run(
        capsys,
        "tail",
        *remote(gateway, project),
        *("--backlog", "10", "--max", "3", "--seconds", "30", "--json"),
    )
    assert code == 0
    docs = [orjson.loads(line) for line in out.splitlines()]
    assert len(docs) == 3
    assert {d["status"] for d in docs} == {"Success"}
    assert [d["uid"] for d in docs] == sorted(d["uid"] for d in docs)  # oldest first
