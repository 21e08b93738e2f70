"""``hookcast send`` and ``hookcast tail`` against a real gateway and receiver."""

from __future__ import annotations

import threading
from typing import Any

import orjson
import pytest

from hookcast import cli, progress
from hookcast.settings import Settings
from support import Behaviour, Gateway, Project, Receiver, free_port, wait_until


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


def test_retry_requeues_failed_deliveries_with_a_progress_bar(
    gateway: Gateway, receiver: Receiver, capsys: pytest.CaptureFixture[str]
) -> None:
    project = gateway.create_project(
        "cli-retry", {"strategy": {"type": "linear", "duration": 1, "retry_count": 1}}
    )
    receiver.behave("/flaky", Behaviour(500))
    ep = project.endpoint(receiver.url + "/flaky")
    for i in range(6):
        project.publish(ep["uid"], data={"i": i})
    assert wait_until(lambda: [d["status"] for d in project.deliveries()] == ["Failure"] * 6, 15)
    receiver.behave("/flaky", Behaviour(200))
    code, out, err = run(
        capsys, "retry", *remote(gateway, project), "--endpoint", ep["uid"], "--json"
    )
    assert code == 0
    job = orjson.loads(out)
    assert job["status"] == "done" and job["processed"] == 6 and job["requeued"] == 6
    assert "retry  [" in err and "6/6" in err  # the bar, on stderr
    assert wait_until(lambda: all(d["status"] == "Success" for d in project.deliveries()), 15)
    # safe to call twice: nothing failed is left, nothing is sent again
    code, out, _ = run(capsys, "retry", *remote(gateway, project), "--json", "-q")
    assert code == 0 and orjson.loads(out)["requeued"] == 0


def test_replay_resends_events_and_can_return_at_once(
    gateway: Gateway, project: Project, receiver: Receiver, capsys: pytest.CaptureFixture[str]
) -> None:
    ep = project.endpoint(receiver.url + "/replay")
    for i in range(3):
        project.publish(ep["uid"], data={"i": i})
    receiver.wait_for("/replay", 3)
    code, out, err = run(capsys, "replay", *remote(gateway, project))
    assert code == 0 and "3 replayed" in out and "3/3" in err, err
    assert len(receiver.wait_for("/replay", 6)) == 6

    code, out, _ = run(capsys, "replay", *remote(gateway, project), "--no-wait", "--json")
    assert code == 0 and orjson.loads(out)["status"] == "queued"
    assert len(receiver.wait_for("/replay", 9)) == 9


def test_send_broadcast_waits_for_the_last_delivery(
    gateway: Gateway, project: Project, receiver: Receiver, capsys: pytest.CaptureFixture[str]
) -> None:
    for i in range(4):
        ep = project.endpoint(receiver.url + f"/b{i}", owner_id=f"owner-{i}")
        body = {"name": "all", "endpoint_id": ep["uid"], "filter_config": {"event_types": ["*"]}}
        project.ok("POST", "/subscriptions", 201, json=body)
    key = project.ok("POST", "/api-keys", 201, json={"name": "b", "broadcast": True})["key"]
    code, out, err = run(
        capsys,
        "send",
        *("--project", project.id, "--url", gateway.base, "--key", key),
        *("--broadcast", "--type", "news", "--data", "{}", "--wait", "--timeout", "30"),
    )
    assert code == 0, err
    assert "4 delivered, 0 failed" in out
    assert "broadcast  [" in err
    for i in range(4):
        assert receiver.at(f"/b{i}")  # all delivered before the command returned


def test_waiting_gives_up_after_the_timeout_with_advice(
    gateway: Gateway, project: Project, receiver: Receiver, capsys: pytest.CaptureFixture[str]
) -> None:
    receiver.behave("/slow", Behaviour(delay_s=2))  # still in flight at the 0.5 s timeout
    ep = project.endpoint(receiver.url + "/slow", owner_id="o")
    body = {"name": "all", "endpoint_id": ep["uid"], "filter_config": {"event_types": ["*"]}}
    project.ok("POST", "/subscriptions", 201, json=body)
    key = project.ok("POST", "/api-keys", 201, json={"name": "b", "broadcast": True})["key"]
    code, out, err = run(
        capsys,
        "send",
        *("--project", project.id, "--url", gateway.base, "--key", key),
        *("--broadcast", "--type", "news", "--data", "{}", "--wait", "--timeout", "0.5"),
    )
    assert code == 2 and out == ""
    assert "still being delivered after 0.5 s" in err and "--timeout" in err


def test_progress_line_renders_counts_share_and_rate() -> None:
    line = progress.render("retry", 1234, 5000, 120.4, "requeued 1,000")
    assert line.startswith("retry  [#######")
    assert "1,234/5,000  25%" in line and "120/s" in line and line.endswith("requeued 1,000")
    assert "?/?" not in progress.render("broadcast", 3, None, None) and "3/?" in (
        progress.render("broadcast", 3, None, None)
    )


def test_databases_are_shown_by_absolute_path_and_without_password(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert cli.shown_database("sqlite:///hookcast.db") == f"sqlite:///{tmp_path}/hookcast.db"
    pg = "postgresql://app:s3cret@db.internal:5432/hooks"
    assert cli.shown_database(pg) == "postgresql://app:***@db.internal:5432/hooks"
    text = cli.greeting(Settings(database_url=pg, host="0.0.0.0", port=5005))
    assert "s3cret" not in text and "app:***@db.internal" in text
    assert "hookcast: dashboard: http://127.0.0.1:5005/dashboard/" in text
    # the default address needs no --url; a PostgreSQL database is named by the variable
    assert 'with HOOKCAST_DATABASE_URL set to this database: eval "$(hookcast project create' in (
        text
    )
    assert "--url" not in text and "--database-url" not in text


def test_counts_read_as_english() -> None:
    assert cli.plural(1, "delivery", "deliveries") == "1 delivery"
    assert cli.plural(0, "delivery", "deliveries") == "0 deliveries"
    assert cli.plural(1200, "endpoint", "endpoints") == "1,200 endpoints"
