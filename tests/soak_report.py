"""Totals of a ``make soak`` run: reads the lines the zoo tests wrote (HOOKCAST_ZOO_REPORT)."""

from __future__ import annotations

import json
import sys
from collections import defaultdict


def main(path: str) -> None:
    totals: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    with open(path) as f:
        for line in f:
            run = json.loads(line)
            store = run.pop("store")
            totals[store]["runs"] += 1
            for key, value in run.items():
                totals[store][key] += value
    for store, figures in sorted(totals.items()):
        shown = ", ".join(f"{k} {v:,}" for k, v in figures.items())
        print(f"soak {store}: {shown}")


if __name__ == "__main__":
    main(sys.argv[1])
