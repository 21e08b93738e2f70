"""convoy-python 1.0.0a1 (the generated openapi-python-client) as a real client.

1.0.0a1 is also the ``convoy`` package, so it lives apart in ``<repo>/.venv/sdk1``
(``make test`` installs it) and runs in a subprocess: ``sdk1_flows.py`` drives one flow
through ``AuthenticatedClient`` and the generated ``sync_detailed`` operations and prints
a JSON report that these tests assert on.

The 1.x client only parses the status code the spec documents for each operation, builds
every object with ``from_dict`` (enums must be valid, lists must not be null) and silently
keeps the raw dict when a nested object does not parse; the report lists each of those as
a failure, and each value whose JSON type is not the spec's as a type mismatch.

Broadcast is not implemented yet, so it is not exercised here.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from support import Behaviour, Gateway, Project, Receiver

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
SDK1 = REPO / ".venv" / "sdk1"
FLOWS = HERE / "sdk1_flows.py"
RETRY_ONCE = {"strategy": {"type": "linear", "duration": 1, "retry_count": 1}}


@pytest.fixture(scope="session")
def sdk1_path() -> Path:
    if not (SDK1 / "convoy" / "api" / "endpoints").is_dir():
        pytest.fail(
            f"convoy-python 1.0.0a1 is not installed at {SDK1}: run `make test` "
            "(it installs it with pip --target .venv/sdk1)"
        )
    return SDK1


def run_flow(sdk1: Path, project: Project, receiver: Receiver | None, flow: str) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": str(sdk1)}
    cmd = [
        sys.executable,
        str(FLOWS),
        "--base",
        project.gateway.base,
        "--key",
        project.key,
        "--project",
        project.id,
        "--receiver",
        receiver.url if receiver else "",
        flow,
    ]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=90, check=False)
    assert proc.returncode == 0, f"sdk1_flows.py {flow} exited {proc.returncode}:\n{proc.stderr}"
    report: dict[str, Any] = json.loads(proc.stdout)
    assert Path(report["sdk_file"]).resolve().is_relative_to(sdk1.resolve()), (
        f"the subprocess imported convoy from {report['sdk_file']}, not the 1.x client"
    )
    assert report["calls"], f"{flow}: no call was made"
    return report


def assert_clean(report: dict[str, Any]) -> None:
    problems = {k: report[k] for k in ("failures", "type_mismatches") if report[k]}
    assert not problems, (
        f"convoy-python 1.0.0a1, flow {report['flow']!r}:\n"
        + json.dumps(problems, indent=1)
        + "\ncalls:\n"
        + "\n".join(
            f"  {c['method']} {c['url']} -> {c['status']} {c['parsed']}"
            + (f"  (x{c['times']})" if c["times"] > 1 else "")
            for c in report["calls"]
        )
    )


# ---- the flows 0.2.0 also has -------------------------------------------------------------


def test_endpoints(sdk1_path: Path, project: Project, receiver: Receiver) -> None:
    """create/get/list/update/pause (toggle)/activate/expire_secret/delete, then a 404."""
    assert_clean(run_flow(sdk1_path, project, receiver, "endpoints"))


def test_subscriptions(sdk1_path: Path, project: Project, receiver: Receiver) -> None:
    assert_clean(run_flow(sdk1_path, project, receiver, "subscriptions"))


def test_events_deliveries_and_attempts(
    sdk1_path: Path, project: Project, receiver: Receiver
) -> None:
    report = run_flow(sdk1_path, project, receiver, "events")
    assert_clean(report)
    got = receiver.at("/sdk1/events")
    assert len(got) == 1 and json.loads(got[0].body) == {"order": 42}


def test_fanout(sdk1_path: Path, project: Project, receiver: Receiver) -> None:
    assert_clean(run_flow(sdk1_path, project, receiver, "fanout"))
    for name in ("a", "b"):
        got = receiver.at(f"/sdk1/fanout/{name}")
        assert len(got) == 1 and json.loads(got[0].body) == {"fan": True}
    assert receiver.at("/sdk1/fanout/c") == []


def test_dynamic_event(sdk1_path: Path, project: Project, receiver: Receiver) -> None:
    assert_clean(run_flow(sdk1_path, project, receiver, "dynamic"))
    got = receiver.at("/sdk1/dynamic")
    assert len(got) == 1 and json.loads(got[0].body) == {"dynamic": 1}


def test_failed_delivery_resend_and_force_resend(
    sdk1_path: Path, gateway: Gateway, receiver: Receiver
) -> None:
    project = gateway.create_project("retry-once", config=RETRY_ONCE)
    receiver.behave("/sdk1/resend", Behaviour(status=500), Behaviour(status=200))
    assert_clean(run_flow(sdk1_path, project, receiver, "resend"))
    assert [r.body for r in receiver.at("/sdk1/resend")] == [b'{"fail":1}'] * 3


def test_discarded_delivery_resend(sdk1_path: Path, project: Project, receiver: Receiver) -> None:
    assert_clean(run_flow(sdk1_path, project, receiver, "discarded"))
    got = receiver.at("/sdk1/discarded")
    assert [json.loads(r.body) for r in got] == [{"paused": True}], "only the resend arrives"


def test_error_responses_parse(sdk1_path: Path, project: Project, receiver: Receiver) -> None:
    """401, 400 and 404 parse into the documented *Response401/400/404 models."""
    assert_clean(run_flow(sdk1_path, project, receiver, "errors"))


# ---- contract routes (convoy-api.md §4) only the 1.x client reaches ---------------------------


def test_subscription_toggle_status(sdk1_path: Path, project: Project, receiver: Receiver) -> None:
    assert_clean(run_flow(sdk1_path, project, receiver, "subscription_toggle"))


def test_event_replay_and_batch_replay(
    sdk1_path: Path, project: Project, receiver: Receiver
) -> None:
    assert_clean(run_flow(sdk1_path, project, receiver, "event_replay"))
    assert len(receiver.at("/sdk1/replay")) >= 2


def test_batch_retry(sdk1_path: Path, gateway: Gateway, receiver: Receiver) -> None:
    project = gateway.create_project("retry-once", config=RETRY_ONCE)
    receiver.behave("/sdk1/batchretry", Behaviour(status=500), Behaviour(status=200))
    assert_clean(run_flow(sdk1_path, project, receiver, "batch_retry"))
