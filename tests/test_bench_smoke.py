"""A tiny run of the benchmark harness (``python -m bench --smoke``): it starts, measures,
writes its results, and every published event is delivered, signed. Timing figures are
not asserted: only that they exist, or are null with a reason where a scenario is not run
at this size or its service is not there."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent

# the keys the benchmark issue asks results.json to carry (medians; null + reason allowed)
REQUIRED_KEYS = (
    "ingest_events_per_s",
    "e2e_deliveries_per_s",
    "e2e_fanout5_deliveries_per_s",
    "e2e_p99_ms_at_2000",
    "broadcast_10k_s",
    "broadcast_100k_s",
    "broadcast_peak_rss_mb",
    "noisy_healthy_ratio",
    "postgres_deliveries_per_s",
    "celery_deliveries_per_s",
    "quick",
)


def _bench(tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    out = tmp_path / "results.json"
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "--smoke", *args, "--out", str(out), "--no-docs", "-q"],
        cwd=REPO,
        env={**os.environ, **(env or {})},
        capture_output=True,
        timeout=90,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")[-4000:]
    doc: dict[str, Any] = json.loads(out.read_text())
    return doc


def test_smoke_run_measures_every_embedded_scenario_and_delivers_everything(
    tmp_path: Path,
) -> None:
    doc = _bench(tmp_path, "--only", "ingest,e2e,broadcast,noisy")
    assert doc["quick"] is True and doc["smoke"] is True
    # the other two come from the scenarios that need services (the next test)
    assert set(REQUIRED_KEYS) - set(doc) == {"postgres_deliveries_per_s", "celery_deliveries_per_s"}
    assert doc["hookcast_workers"] >= 0
    for key in (
        "ingest_events_per_s",
        "e2e_deliveries_per_s",
        "e2e_fanout5_deliveries_per_s",
        "noisy_healthy_ratio",
        "broadcast_500_s",
    ):
        assert isinstance(doc[key], float) and doc[key] > 0, key
    # not run at this size: present, null, with the reason
    for key in (
        "e2e_p99_ms_at_2000",
        "broadcast_10k_s",
        "broadcast_100k_s",
        "broadcast_peak_rss_mb",
    ):
        assert doc[key] is None and "smoke" in doc["unavailable"][key], key

    counts, problems = doc["counts"], doc["problems"]
    assert not [k for k, v in problems.items() if v], problems
    # ingest: every 201 is in the database
    assert counts["ingest_events_committed"] == counts["ingest_events_accepted"] == 300
    # fan-out 1: 200 events; fan-out 5: 40 events x 5 endpoints
    assert counts["e2e_deliveries_expected"] == 400
    assert counts["e2e_deliveries_received"] == 400
    assert counts["e2e_events_accepted"] == 240
    assert counts["e2e_signatures_verified"] > 0
    # broadcast: one event, 500 endpoints, each reached once, progress API agrees
    assert counts["broadcast_deliveries_received"] == 500
    # noisy: 2 x 200 events, 18 of every 20 to healthy endpoints; the hanging ones were hit
    assert counts["noisy_healthy_deliveries_received"] == 360
    assert counts["noisy_hung_requests"] > 0
    for name in ("ingest", "e2e", "broadcast", "noisy"):
        assert doc["scenarios"][name]["ok"] is True, name
    assert doc["machine"]["cpu_count"] >= 1 and doc["machine"]["python"]


def test_missing_services_are_recorded_as_null_with_a_reason(tmp_path: Path) -> None:
    # nothing listens on port 1: PostgreSQL and Redis are "not there"; nor is the reference
    doc = _bench(
        tmp_path,
        "--only",
        "postgres,baseline,reference",
        env={
            "BENCH_PG_ADMIN_URL": "postgresql://postgres@127.0.0.1:1/postgres",
            "BENCH_REDIS_URL": "redis://127.0.0.1:1",
            "HOOKCAST_REFERENCE_DIR": str(tmp_path / "no-reference"),
        },
    )
    for key in ("postgres_deliveries_per_s", "celery_deliveries_per_s", "hookcast_vs_celery_ratio"):
        assert doc[key] is None, key
        assert doc["unavailable"][key], key
    assert "PostgreSQL" in doc["unavailable"]["postgres_deliveries_per_s"]
    for key in ("reference_deliveries_per_s", "reference_ingest_events_per_s"):
        assert doc[key] is None and "reference prototype not found" in doc["unavailable"][key]
    assert not [k for k, v in doc["problems"].items() if v], doc["problems"]
    assert "quick" in doc and "noisy_healthy_ratio" in doc
