"""A tiny run of the benchmark harness: it starts, measures, writes its results, and every
published event is delivered, signed. Timing figures are not asserted: only that they exist."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

REQUIRED_KEYS = (
    "e2e_events_per_s",
    "e2e_deliveries_per_s",
    "e2e_fanout5_deliveries_per_s",
    "e2e_p50_ms",
    "e2e_p95_ms",
    "e2e_p99_ms",
    "e2e_p99_ms_at_2000",
    "quick",
)


def test_quick_e2e_run_writes_results_and_delivers_every_event(tmp_path: Path) -> None:
    out = tmp_path / "results.json"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench",
            "--quick",
            "--only",
            "e2e",
            "--events",
            "200",
            "--out",
            str(out),
            "--no-docs",
            "--quiet",
        ],
        cwd=REPO,
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")[-4000:]

    doc = json.loads(out.read_text())
    missing = [k for k in REQUIRED_KEYS if k not in doc]
    assert not missing, missing
    assert doc["quick"] is True
    assert all(doc[k] > 0 for k in REQUIRED_KEYS if k != "quick")

    counts, problems = doc["counts"], doc["problems"]
    # fan-out 1: 200 events; fan-out 5: 40 events x 5 endpoints; fixed rate: 200 events
    assert counts["e2e_deliveries_expected"] == 600
    assert counts["e2e_deliveries_received"] == counts["e2e_deliveries_expected"]
    assert counts["e2e_events_accepted"] == 440
    assert counts["e2e_signatures_verified"] > 0
    assert problems["e2e_missing_deliveries"] == 0
    assert problems["e2e_bad_signatures"] == 0
    assert problems["e2e_publish_errors"] == 0
    assert doc["scenarios"]["e2e"]["ok"] is True
