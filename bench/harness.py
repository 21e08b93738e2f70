"""The harness: run each scenario's cases round-robin, keep medians and spreads, write results.

A scenario is a module with ``NAME``, ``TITLE``, ``METRICS`` (key → :class:`Metric`) and
``cases(options) -> list[Case]``. A case runs once per call and returns an
:class:`Outcome`: ``metrics`` (a value per run; the harness keeps the median, the spread
and every run's value), ``problems`` (counts that must stay zero, summed over runs) and
``counts`` (summed, for the record). Cases of all scenarios are interleaved run by run, so
slow drift of the machine spreads over all of them instead of biasing one.
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, Protocol

import orjson

from bench import machine


@dataclass(frozen=True)
class Options:
    quick: bool = False
    runs: int = 3
    events: int | None = None  # overrides each scenario's own event count
    concurrency: int = 50
    profile: bool = False
    py_spy: str | None = None
    verbose: bool = True
    wait_idle_s: float = 0.0  # before each case, wait up to this long for a quiet machine


@dataclass(frozen=True)
class Metric:
    label: str
    unit: str
    digits: int = 0
    show_spread: bool = True  # False for figures near zero, whose relative spread means nothing


@dataclass
class Outcome:
    metrics: dict[str, float] = field(default_factory=dict)
    problems: dict[str, int] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    profile: str = ""  # a text summary, only on profiled runs


class Case(Protocol):
    name: str

    def describe(self) -> dict[str, Any]: ...

    def run(self, options: Options, *, profile: bool = False) -> Outcome: ...


def log(message: str) -> None:
    sys.stderr.write(f"[bench {time.strftime('%H:%M:%S')}] {message}\n")
    sys.stderr.flush()


def spread(values: Sequence[float]) -> float:
    """(max - min) / median, the measure of noise used throughout the suite."""
    med = statistics.median(values)
    return (max(values) - min(values)) / med if med else 0.0


@dataclass
class ScenarioResult:
    module: ModuleType
    cases: list[Case]
    per_run: dict[str, list[float]] = field(default_factory=dict)
    problems: dict[str, int] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    profiles: dict[str, str] = field(default_factory=dict)

    def add(self, outcome: Outcome) -> None:
        for key, value in outcome.metrics.items():
            self.per_run.setdefault(key, []).append(value)
        for key, value in outcome.problems.items():
            self.problems[key] = self.problems.get(key, 0) + value
        for key, value in outcome.counts.items():
            self.counts[key] = self.counts.get(key, 0) + value

    def failures(self) -> list[str]:
        return [f"{k}={v}" for k, v in self.problems.items() if v]


def run_all(
    scenarios: Sequence[ModuleType], options: Options, on_case: Callable[[str], None] = log
) -> list[ScenarioResult]:
    results = [ScenarioResult(m, list(m.cases(options))) for m in scenarios]
    for run in range(options.runs):
        for res in results:
            for case in res.cases:
                on_case(f"{res.module.NAME}/{case.name}: run {run + 1}/{options.runs}")
                if options.wait_idle_s > 0:
                    busy = machine.wait_idle(options.wait_idle_s)
                    if busy > 0.15:
                        on_case(f"  machine still busy ({busy:.2f} cores) after waiting")
                outcome = case.run(options)
                res.add(outcome)
                if options.verbose:
                    on_case("  " + _brief(outcome))
    if options.profile:
        for res in results:
            for case in res.cases:
                on_case(f"{res.module.NAME}/{case.name}: profiled run (not counted)")
                res.profiles[case.name] = case.run(options, profile=True).profile
    return results


def _brief(outcome: Outcome) -> str:
    shown = ", ".join(
        f"{k}={v:,.1f}" for k, v in outcome.metrics.items() if "_ms" in k or "_per_s" in k
    )
    bad = ", ".join(f"{k}={v}" for k, v in outcome.problems.items() if v)
    return shown + (f"  PROBLEMS: {bad}" if bad else "")


# -- results.json -------------------------------------------------------------------------------
def results_document(
    results: Sequence[ScenarioResult], options: Options, source: dict[str, Any]
) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "quick": options.quick,
        "runs": options.runs,
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": machine.describe(),
        "source": source,
    }
    spreads: dict[str, float] = {}
    per_run: dict[str, list[float]] = {}
    problems: dict[str, int] = {}
    counts: dict[str, int] = {}
    scenarios: dict[str, Any] = {}
    for res in results:
        for key, values in res.per_run.items():
            doc[key] = statistics.median(values)
            spreads[key] = round(spread(values), 4)
            per_run[key] = values
        problems.update(res.problems)
        counts.update(res.counts)
        scenarios[res.module.NAME] = {
            "title": res.module.TITLE,
            "cases": {c.name: c.describe() for c in res.cases},
            "ok": not res.failures(),
        }
        if res.profiles:
            scenarios[res.module.NAME]["profiles"] = res.profiles
    doc.update(
        spread=spreads, per_run=per_run, problems=problems, counts=counts, scenarios=scenarios
    )
    return doc


def write_results(path: Path, doc: dict[str, Any]) -> None:
    """Write ``doc``, keeping other scenarios' keys from an existing file of the same kind
    (quick or full), so ``--only`` refreshes one scenario without losing the rest."""
    doc = dict(doc)
    merged: dict[str, Any] = {}
    if path.exists():
        try:
            old = orjson.loads(path.read_bytes())
        except (OSError, orjson.JSONDecodeError):
            old = {}
        if isinstance(old, dict) and old.get("quick") == doc["quick"]:
            merged = old
    for key in ("spread", "per_run", "problems", "counts", "scenarios"):
        merged[key] = {**merged.get(key, {}), **doc.pop(key)}
    merged.update(doc)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(
        orjson.dumps(merged, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n"
    )


# -- docs/benchmarks.md ---------------------------------------------------------------------------
def markdown_block(results: Sequence[ScenarioResult], doc: dict[str, Any], command: str) -> str:
    m, src = doc["machine"], doc["source"]
    lines = [
        f"Measured {doc['date']} with `{command}` "
        f"({'quick' if doc['quick'] else 'full'}; every figure is the median of "
        f"{doc['runs']} run{'s' if doc['runs'] != 1 else ''}; spread = (max - min) / median).",
        "",
        f"Machine: {m['cpu_count']} vCPU ({m['cpu_model']}), {m['memory_gib']:.0f} GiB RAM, "
        f"{m['os']}, Python {m['python']}, SQLite {m['sqlite']}, work files on {m['workdir_fs']}. "
        "Libraries: " + ", ".join(f"{k} {v}" for k, v in m["libraries"].items()) + ".",
        "",
        f"Source measured: git `{src['git']}`, `src/hookcast` digest `{src['digest']}` "
        "(a copy taken when the run started)"
        + ("; the working tree changed during the run." if src["tree_changed_during_run"] else "."),
        "",
    ]
    for res in results:
        lines += [f"### {res.module.TITLE}", ""]
        for case in res.cases:
            desc = case.describe()
            lines.append(f"* `{case.name}`: {desc.get('summary', '')}")
        lines += ["", "| metric | median | spread | runs |", "|---|---:|---:|---|"]
        for key, metric in res.module.METRICS.items():
            values = res.per_run.get(key)
            if not values:
                continue
            fmt = f"{{:,.{metric.digits}f}}"
            runs = " / ".join(fmt.format(v) for v in values)
            unit = f" {metric.unit}" if metric.unit else ""
            lines.append(
                f"| {metric.label} (`{key}`) | **{fmt.format(statistics.median(values))}**{unit} "
                f"| {f'{spread(values):.0%}' if metric.show_spread else 'n/a'} | {runs} |"
            )
        checks = ", ".join(f"{k} {v:,}" for k, v in {**res.counts, **res.problems}.items())
        lines += ["", f"Checks (summed over runs): {checks}.", ""]
        for name, text in res.profiles.items():
            lines += [
                f"Profile of the server during `{name}` (py-spy, not a counted run):",
                "",
                "```",
                text.rstrip(),
                "```",
                "",
            ]
    return "\n".join(lines)


def update_docs(path: Path, scenario: str, block: str) -> None:
    """Replace the generated block of ``scenario`` in ``path`` (appending it if absent);
    everything outside the markers is left as written by hand."""
    start, end = f"<!-- bench:{scenario}:start -->", f"<!-- bench:{scenario}:end -->"
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    note = "<!-- generated by `python -m bench`; edits inside are overwritten -->"
    generated = f"{start}\n{note}\n\n{block}\n{end}"
    if start in text and end in text:
        before, rest = text.split(start, 1)
        after = rest.split(end, 1)[1]
        text = before + generated + after
    else:
        text = text.rstrip("\n") + "\n\n" + generated + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
