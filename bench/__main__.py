"""``python -m bench [--quick] [--only e2e,broadcast] [--runs N]``, from the repository root."""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import sys
from pathlib import Path
from types import ModuleType

from bench import (
    baseline,
    broadcast,
    brokers,
    e2e,
    growth,
    harness,
    ingest,
    noisy,
    ordering,
    outbox,
    postgres,
    procs,
    reference,
    source,
    summary,
)

# one module per scenario, run in this order (cases interleave run by run); the reference
# prototype right after e2e, so its runs alternate with hookcast's in every round
SCENARIOS: dict[str, ModuleType] = {
    m.NAME: m
    for m in (
        ingest,
        brokers,
        e2e,
        reference,
        broadcast,
        noisy,
        ordering,
        postgres,
        growth,
        outbox,
        baseline,
    )
}

REPO = procs.REPO


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench", description="hookcast's benchmarks.")
    p.add_argument("--quick", action="store_true", help="small counts, one run (about a minute)")
    p.add_argument(
        "--smoke",
        action="store_true",
        help="tiny counts, one run: only checks that the harness works (the test suite's)",
    )
    p.add_argument("--only", help=f"comma-separated scenarios (of: {', '.join(SCENARIOS)})")
    p.add_argument("--runs", type=int, help="runs per case (default 3, or 1 with --quick)")
    p.add_argument("--events", type=int, help="events per case, overriding the scenario's own")
    p.add_argument("--concurrency", type=int, default=50, help="concurrent publishers (50)")
    p.add_argument(
        "--out",
        type=Path,
        help="results file (bench/results.json; bench/out/smoke.json with --smoke)",
    )
    p.add_argument(
        "--docs",
        type=Path,
        help="Markdown file to update (default docs/benchmarks.md on full runs; "
        "quick runs update none unless given)",
    )
    p.add_argument("--no-docs", action="store_true", help="do not touch any Markdown file")
    p.add_argument(
        "--profile",
        action="store_true",
        help="one extra, uncounted run per case with py-spy sampling the server",
    )
    p.add_argument("--py-spy", help="path to the py-spy binary (else looked up on PATH)")
    p.add_argument(
        "--wait-idle",
        type=float,
        default=0.0,
        metavar="S",
        help="before each case wait up to S seconds for other load to stop",
    )
    p.add_argument("-q", "--quiet", action="store_true", help="no per-run lines on stderr")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    names = [n.strip() for n in (args.only or ",".join(SCENARIOS)).split(",") if n.strip()]
    unknown = [n for n in names if n not in SCENARIOS]
    if unknown:
        sys.stderr.write(
            f"unknown scenario(s): {', '.join(unknown)}; known: {', '.join(SCENARIOS)}\n"
        )
        return 2
    args.quick = args.quick or args.smoke
    if args.out is None:
        args.out = REPO / "bench" / ("out/smoke.json" if args.smoke else "results.json")
    runs = args.runs if args.runs is not None else (1 if args.quick else 3)
    if runs < 1 or (args.events is not None and args.events < 1):
        sys.stderr.write("--runs and --events must be positive\n")
        return 2
    options = harness.Options(
        quick=args.quick,
        smoke=args.smoke,
        runs=runs,
        events=args.events,
        concurrency=args.concurrency,
        profile=args.profile,
        py_spy=args.py_spy,
        verbose=not args.quiet,
        wait_idle_s=args.wait_idle,
    )
    procs.install_cleanup()
    frozen, frozen_digest = source.snapshot()
    revision = source.git_revision()
    inherited = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = str(frozen) + (os.pathsep + inherited if inherited else "")
    try:
        results = harness.run_all([SCENARIOS[n] for n in names], options)
    finally:
        procs.stop_all()
        shutil.rmtree(frozen, ignore_errors=True)
    source_info = {
        "digest": frozen_digest,
        "git": revision,
        "tree_changed_during_run": source.digest() != frozen_digest,
    }
    doc = harness.merge_results(args.out, harness.results_document(results, options, source_info))
    summary.derive(doc)
    command = ("python -m bench " + shlex.join(argv if argv is not None else sys.argv[1:])).strip()
    docs = (
        None
        if args.no_docs
        else (args.docs or (None if args.quick else REPO / "docs" / "benchmarks.md"))
    )
    if docs is not None:
        harness.update_docs(docs, "summary", summary.markdown(doc, command))
        for res in results:
            harness.update_docs(docs, res.module.NAME, harness.markdown_block([res], doc, command))
    harness.write_results(args.out, doc)
    failures = [f for res in results for f in res.failures()]
    if not args.quiet:
        for res in results:
            print(harness.markdown_block([res], doc, command))
    print(summary.markdown(doc, command))
    harness.log(f"results: {args.out}" + (f", tables: {docs}" if docs else ""))
    if failures:
        harness.log("FAILED checks: " + ", ".join(failures))
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
