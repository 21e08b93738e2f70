"""The harness: run each scenario's cases round-robin, keep medians and spreads, write results.

A scenario is a module with ``NAME``, ``TITLE``, ``METRICS`` (key → :class:`Metric`) and
``cases(options) -> list[Case]``. A case runs once per call and returns an
:class:`Outcome`: ``metrics`` (a value per run; the harness keeps the median, the spread
and every run's value), ``problems`` (counts that must stay zero, summed over runs) and
``counts`` (summed, for the record). Cases of all scenarios are interleaved run by run, so
slow drift of the machine spreads over all of them instead of biasing one.

A figure that could not be measured is recorded as ``null`` with a reason (``unavailable``
in ``results.json``), never left out silently: a case returns an outcome with
``unavailable`` set (a store that does not exist yet, a baseline whose library is not
installed), a scenario's optional ``skipped(options)`` names keys it does not run in this
mode (the 100,000-endpoint broadcast under ``--quick``), and a case that raises is logged,
counted as a problem (``<scenario>_case_errors``) and its keys are null for that run.
"""

from __future__ import annotations

import statistics
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, Protocol

import orjson

from bench import machine
from bench.gateway import bench_workers as gateway_workers


@dataclass(frozen=True)
class Options:
    quick: bool = False
    smoke: bool = False  # tiny sizes, for the test suite: checks that the harness works
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
    #: why the case could not be measured at all (its ``null_keys`` are then null)
    unavailable: str = ""
    null_keys: tuple[str, ...] = ()


class Case(Protocol):
    name: str

    def describe(self) -> dict[str, Any]: ...

    def run(self, options: Options, *, profile: bool = False) -> Outcome: ...

    def metric_keys(self) -> list[str]: ...


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
    unavailable: dict[str, str] = field(default_factory=dict)  # metric key -> reason

    def add(self, outcome: Outcome) -> None:
        for key in outcome.null_keys:
            self.unavailable.setdefault(key, outcome.unavailable or "not measured")
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
                outcome = _run_case(res, case, options, on_case)
                res.add(outcome)
                if options.verbose:
                    on_case("  " + _brief(outcome))
    if options.profile:
        for res in results:
            for case in res.cases:
                on_case(f"{res.module.NAME}/{case.name}: profiled run (not counted)")
                outcome = _run_case(res, case, options, on_case, profile=True)
                if outcome.profile:
                    res.profiles[case.name] = outcome.profile
    for res in results:
        _note_skipped(res, options)
    return results


def _note_skipped(res: ScenarioResult, options: Options) -> None:
    """Keys the scenario does not measure in this mode are null with the reason."""
    skipped = getattr(res.module, "skipped", None)
    for key, reason in (skipped(options) if skipped else {}).items():
        res.unavailable.setdefault(key, reason)


def _run_case(
    res: ScenarioResult,
    case: Case,
    options: Options,
    on_case: Callable[[str], None],
    *,
    profile: bool = False,
) -> Outcome:
    """One run of ``case``; an exception is logged and counted, not fatal to the suite."""
    try:
        return case.run(options, profile=profile)
    except Exception as exc:
        detail = "".join(traceback.format_exception_only(exc)).strip()
        on_case(f"  ERROR in {res.module.NAME}/{case.name}: {detail[-1500:]}")
        keys = case.metric_keys() if hasattr(case, "metric_keys") else []
        return Outcome(
            problems={f"{res.module.NAME}_case_errors": 1},
            unavailable=f"the run failed: {detail.splitlines()[0][:300]}",
            null_keys=tuple(keys),
        )


def _brief(outcome: Outcome) -> str:
    shown = ", ".join(
        f"{k}={v:,.1f}"
        for k, v in outcome.metrics.items()
        if "_ms" in k or "_per_s" in k or k.endswith("_s")
    )
    bad = ", ".join(f"{k}={v}" for k, v in outcome.problems.items() if v)
    if outcome.unavailable:
        shown += f"  UNAVAILABLE: {outcome.unavailable}"
    return shown + (f"  PROBLEMS: {bad}" if bad else "")


# -- results.json -------------------------------------------------------------------------------
def results_document(
    results: Sequence[ScenarioResult], options: Options, source: dict[str, Any]
) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "quick": options.quick,
        "smoke": options.smoke,
        "runs": options.runs,
        # delivery worker processes beside the API process (`hookcast serve --workers N`)
        "hookcast_workers": gateway_workers(),
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": machine.describe(),
        "source": source,
    }
    spreads: dict[str, float] = {}
    per_run: dict[str, list[float]] = {}
    problems: dict[str, int] = {}
    counts: dict[str, int] = {}
    unavailable: dict[str, str] = {}
    scenarios: dict[str, Any] = {}
    for res in results:
        for key, values in res.per_run.items():
            doc[key] = statistics.median(values)
            spreads[key] = round(spread(values), 4)
            per_run[key] = values
        for key, reason in res.unavailable.items():
            if key not in res.per_run:
                doc[key] = None
                unavailable[key] = reason
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
        spread=spreads,
        per_run=per_run,
        problems=problems,
        counts=counts,
        unavailable=unavailable,
        scenarios=scenarios,
    )
    return doc


_SECTIONS = ("spread", "per_run", "problems", "counts", "unavailable", "scenarios")


def merge_results(path: Path, doc: dict[str, Any]) -> dict[str, Any]:
    """``doc`` over an existing results file of the same kind (quick or full; a smoke run
    never merges), so ``--only`` refreshes some scenarios without losing the rest."""
    doc = dict(doc)
    merged: dict[str, Any] = {}
    if path.exists() and not doc.get("smoke"):
        try:
            old = orjson.loads(path.read_bytes())
        except (OSError, orjson.JSONDecodeError):
            old = {}
        if (
            isinstance(old, dict)
            and old.get("quick") == doc["quick"]
            and not old.get("smoke")
            and old.get("hookcast_workers") == doc.get("hookcast_workers")
        ):
            merged = old
    for key in _SECTIONS:
        merged[key] = {**merged.get(key, {}), **doc.pop(key)}
    merged.update(doc)
    # a figure measured now replaces an older "unavailable"
    for key in list(merged["unavailable"]):
        if merged.get(key) is not None:
            del merged["unavailable"][key]
    return merged


def write_results(path: Path, doc: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(orjson.dumps(doc, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n")


# -- docs/benchmarks.md ---------------------------------------------------------------------------
def preamble(doc: dict[str, Any], command: str) -> list[str]:
    """When, how, on what machine and which source: the lines above every generated table."""
    m, src = doc["machine"], doc["source"]
    kind = "smoke" if doc.get("smoke") else ("quick" if doc["quick"] else "full")
    services = "".join(f", {k} {v}" for k, v in m.get("services", {}).items())
    return [
        f"Measured {doc['date']} with `{command}` "
        f"({kind}; every figure is the median of "
        f"{doc['runs']} run{'s' if doc['runs'] != 1 else ''}; spread = (max - min) / median).",
        "",
        f"Machine: {m['cpu_count']} vCPU ({m['cpu_model']}), {m['memory_gib']:.0f} GiB RAM, "
        f"{m['os']}, Python {m['python']}, SQLite {m['sqlite']}{services}, "
        f"work files on {m['workdir_fs']}. "
        "Libraries: " + ", ".join(f"{k} {v}" for k, v in m["libraries"].items()) + ". "
        f"`hookcast serve --workers {doc.get('hookcast_workers', 0)}` "
        "(`HOOKCAST_BENCH_WORKERS`).",
        "",
        f"Source measured: git `{src['git']}`, `src/hookcast` digest `{src['digest']}` "
        "(a copy taken when the run started)"
        + ("; the working tree changed during the run." if src["tree_changed_during_run"] else "."),
        "",
    ]


def markdown_block(results: Sequence[ScenarioResult], doc: dict[str, Any], command: str) -> str:
    lines = preamble(doc, command)
    for res in results:
        lines += [f"### {res.module.TITLE}", ""]
        for case in res.cases:
            desc = case.describe()
            lines.append(f"* `{case.name}`: {desc.get('summary', '')}")
        lines += ["", "| metric | median | spread | runs |", "|---|---:|---:|---|"]
        for key, metric in res.module.METRICS.items():
            values = res.per_run.get(key)
            if not values:
                if key in res.unavailable:
                    lines.append(f"| {metric.label} (`{key}`) | n/a | | {res.unavailable[key]} |")
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
