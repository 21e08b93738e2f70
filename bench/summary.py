"""Figures derived from several scenarios, and the headline table of docs/benchmarks.md.

Derived (ratios of medians, so they are recomputed whenever ``results.json`` changes, also
after ``--only`` refreshed one of the scenarios they come from):

* ``noisy_healthy_ratio``: healthy endpoints' deliveries/s with 10 % hanging neighbours
  over the same with healthy neighbours (``bench/noisy.py``);
* ``hookcast_vs_celery_ratio`` / ``hookcast_vs_dramatiq_ratio``: hookcast's end-to-end
  deliveries/s (fan-out 1, SQLite) over the baseline's, measured in the same suite run or,
  after ``--only``, in the runs recorded in the file;
* ``postgres_vs_sqlite_ratio``: hookcast on PostgreSQL over hookcast on SQLite (fan-out 1,
  ``postgres_deliveries_per_s`` ÷ ``e2e_deliveries_per_s``);
* ``hookcast_vs_reference_ratio``: hookcast's ``e2e_deliveries_per_s`` over the reference
  prototype's ``reference_deliveries_per_s`` (``bench/reference.py``: same load, same
  receiver); ``hookcast_vs_reference_cpu_ratio``: server CPU per delivery, hookcast's over
  the prototype's (above 1: hookcast spends more); ``hookcast_vs_reference_ingest_ratio``:
  ``ingest_events_per_s`` over ``reference_ingest_events_per_s``;
* ``server_cpu_us_per_delivery``: a plain name for hookcast's
  ``e2e_server_cpu_us_per_delivery`` (fan-out 1, SQLite).

Where a run-by-run pairing exists (same number of runs), ``per_run`` and ``spread`` hold
the ratio of each pair of runs; the headline value is always the ratio of the medians.
"""

from __future__ import annotations

from typing import Any

from bench.harness import preamble, spread

DERIVED = {
    "noisy_healthy_ratio": (
        "noisy_healthy_deliveries_per_s",
        "noisy_all_healthy_healthy_deliveries_per_s",
    ),
    "hookcast_vs_celery_ratio": ("e2e_deliveries_per_s", "celery_deliveries_per_s"),
    "hookcast_vs_dramatiq_ratio": ("e2e_deliveries_per_s", "dramatiq_deliveries_per_s"),
    "postgres_vs_sqlite_ratio": ("postgres_deliveries_per_s", "e2e_deliveries_per_s"),
    "hookcast_vs_reference_ratio": ("e2e_deliveries_per_s", "reference_deliveries_per_s"),
    "hookcast_vs_reference_cpu_ratio": (
        "e2e_server_cpu_us_per_delivery",
        "reference_server_cpu_us_per_delivery",
    ),
    "hookcast_vs_reference_ingest_ratio": (
        "ingest_events_per_s",
        "reference_ingest_events_per_s",
    ),
}

# plain names for figures measured under a scenario's key: alias -> source key
ALIASES = {"server_cpu_us_per_delivery": "e2e_server_cpu_us_per_delivery"}

REFERENCE_NOTE = (
    "The *reference* is the team's lean prototype gateway (~200 lines, kept outside the "
    "product, no leases, attempt log, auth or limits; `bench/reference.py`), run in the same "
    "suite run with the same load generator, counts, concurrency and receiver as hookcast's "
    "`e2e` fan-out 1 and `ingest` cases."
)

# (key, label, unit, digits): the figures the issue asks for first, then the rest
HEADLINE: list[tuple[str, str, str, int]] = [
    ("ingest_events_per_s", "Ingest: events accepted and durably committed/s", "/s", 0),
    ("ingest_ack_p50_ms", "Ingest: publish call p50 (at saturation)", "ms", 1),
    ("ingest_ack_p99_ms", "Ingest: publish call p99 (at saturation)", "ms", 1),
    ("ingest_ack_p99_ms_at_2000", "Ingest: publish call p99 at 2,000 events/s", "ms", 1),
    ("e2e_deliveries_per_s", "End to end, fan-out 1: deliveries/s", "/s", 0),
    ("e2e_fanout5_deliveries_per_s", "End to end, fan-out 5: deliveries/s", "/s", 0),
    ("server_cpu_us_per_delivery", "End to end, fan-out 1: server CPU per delivery", "µs", 0),
    ("e2e_p50_ms", "End to end, fan-out 1: publish→delivered p50", "ms", 1),
    ("e2e_p99_ms", "End to end, fan-out 1: publish→delivered p99", "ms", 1),
    ("e2e_p50_ms_at_2000", "End to end at 2,000 events/s: publish→delivered p50", "ms", 1),
    ("e2e_p95_ms_at_2000", "End to end at 2,000 events/s: publish→delivered p95", "ms", 1),
    ("e2e_p99_ms_at_2000", "End to end at 2,000 events/s: publish→delivered p99", "ms", 1),
    ("broadcast_10k_s", "Broadcast to 10,000 endpoints, default rate: s to all delivered", "s", 2),
    (
        "broadcast_100k_s",
        "Broadcast to 100,000 endpoints, default rate: s to all delivered",
        "s",
        2,
    ),
    ("broadcast_10k_unlimited_s", "Broadcast to 10,000, `broadcast_rate: 0`: s", "s", 2),
    ("broadcast_100k_unlimited_s", "Broadcast to 100,000, `broadcast_rate: 0`: s", "s", 2),
    ("broadcast_peak_rss_mb", "Broadcast to 100,000: server peak RSS", "MiB", 0),
    ("noisy_healthy_ratio", "Noisy neighbours: healthy throughput, 10 % hang ÷ none hang", "", 2),
    ("postgres_deliveries_per_s", "PostgreSQL, fan-out 1: deliveries/s", "/s", 0),
    ("postgres_fanout5_deliveries_per_s", "PostgreSQL, fan-out 5: deliveries/s", "/s", 0),
    ("postgres_vs_sqlite_ratio", "PostgreSQL ÷ SQLite (deliveries/s, fan-out 1)", "x", 2),
    (
        "postgres_round_trips_per_delivery",
        "PostgreSQL, fan-out 1: round trips to PostgreSQL per delivery (API + worker)",
        "",
        2,
    ),
    (
        "postgres_db_cpu_us_per_delivery",
        "PostgreSQL, fan-out 1: PostgreSQL server CPU per delivery",
        "µs",
        0,
    ),
    ("celery_deliveries_per_s", "Celery + Redis + requests: deliveries/s", "/s", 0),
    ("dramatiq_deliveries_per_s", "dramatiq + Redis + requests: deliveries/s", "/s", 0),
    ("hookcast_vs_celery_ratio", "hookcast ÷ Celery (deliveries/s, fan-out 1)", "x", 1),
    ("hookcast_vs_dramatiq_ratio", "hookcast ÷ dramatiq (deliveries/s, fan-out 1)", "x", 1),
    ("reference_deliveries_per_s", "Reference prototype, fan-out 1: deliveries/s", "/s", 0),
    (
        "reference_server_cpu_us_per_delivery",
        "Reference prototype, fan-out 1: server CPU per delivery",
        "µs",
        0,
    ),
    ("reference_ingest_events_per_s", "Reference prototype: ingest events committed/s", "/s", 0),
    ("hookcast_vs_reference_ratio", "hookcast ÷ reference (deliveries/s, fan-out 1)", "x", 2),
    (
        "hookcast_vs_reference_cpu_ratio",
        "hookcast ÷ reference (server CPU per delivery, fan-out 1)",
        "x",
        2,
    ),
    ("hookcast_vs_reference_ingest_ratio", "hookcast ÷ reference (ingest events/s)", "x", 2),
]


def derive(doc: dict[str, Any]) -> None:
    """Add the derived ratios and the aliases to a (merged) results document, in place."""
    for key, source in ALIASES.items():
        doc[key] = doc.get(source)
        for section in ("per_run", "spread"):
            if source in doc[section]:
                doc[section][key] = doc[section][source]
            else:
                doc[section].pop(key, None)
        if doc[key] is None:
            doc["unavailable"][key] = doc["unavailable"].get(source, "not measured")
        else:
            doc["unavailable"].pop(key, None)
    for key, (num, den) in DERIVED.items():
        top, bottom = doc.get(num), doc.get(den)
        if not top or not bottom:
            doc[key] = None
            missing = [k for k in (num, den) if not doc.get(k)]
            reasons = [doc["unavailable"].get(k, "not measured") for k in missing]
            doc["unavailable"][key] = "; ".join(
                f"{k}: {r}" for k, r in zip(missing, reasons, strict=True)
            )
            doc["per_run"].pop(key, None)
            doc["spread"].pop(key, None)
            continue
        doc[key] = top / bottom
        doc["unavailable"].pop(key, None)
        a, b = doc["per_run"].get(num, []), doc["per_run"].get(den, [])
        if a and len(a) == len(b) and all(b):
            pairs = [x / y for x, y in zip(a, b, strict=True)]
            doc["per_run"][key] = pairs
            doc["spread"][key] = round(spread(pairs), 4)
        else:
            doc["per_run"].pop(key, None)
            doc["spread"].pop(key, None)


def markdown(doc: dict[str, Any], command: str) -> str:
    lines = preamble(doc, command)
    lines += ["| figure | key | median | spread | runs |", "|---|---|---:|---:|---|"]
    for key, label, unit, digits in HEADLINE:
        if key not in doc:
            continue
        value = doc[key]
        if value is None:
            why = doc["unavailable"].get(key, "not measured")
            lines.append(f"| {label} | `{key}` | n/a | | {why} |")
            continue
        fmt = f"{{:,.{digits}f}}"
        runs = doc["per_run"].get(key) or []
        shown_unit = f" {unit}" if unit and unit != "x" else ("x" if unit == "x" else "")
        spread_text = f"{doc['spread'][key]:.0%}" if key in doc["spread"] and len(runs) > 1 else ""
        lines.append(
            f"| {label} | `{key}` | **{fmt.format(value)}**{shown_unit} | {spread_text} | "
            + " / ".join(fmt.format(v) for v in runs)
            + " |"
        )
    if any(key.startswith("reference_") and key in doc for key, *_ in HEADLINE):
        lines += ["", REFERENCE_NOTE]
    lines.append("")
    return "\n".join(lines)
