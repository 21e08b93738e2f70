"""hookcast's benchmark suite: ``python -m bench [--quick] [--only e2e] [--runs N]``.

One module per scenario (``bench/e2e.py`` …), each a list of cases the harness runs
round-robin ``--runs`` times; the harness keeps the median and the spread of every
metric and writes ``bench/results.json`` and the tables in ``docs/benchmarks.md``.
Every process a scenario starts (server, receiver, load generator) is a real separate
process on this machine, bounded by count and by time, and killed on the way out.
"""
