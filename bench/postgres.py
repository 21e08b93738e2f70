"""The end-to-end cases on PostgreSQL instead of the embedded SQLite store.

The same cases as ``bench/e2e.py`` (fan-out 1 and fan-out 5, as fast as accepted), each on
a fresh database created for the run (``bench/pgdb.py``; ``BENCH_PG_ADMIN_URL``, default
``postgresql://postgres@127.0.0.1:5432/postgres``) and migrated with ``hookcast migrate``.
When PostgreSQL cannot be reached, the migration fails, or the server cannot start on it
(the PostgreSQL store is not built yet), the figures are recorded as null with the reason
instead of failing the suite. PostgreSQL runs with the machine's configuration (for the
reference machine: Debian's defaults, ``synchronous_commit=on``).

Beside throughput, two costs per delivery at fan-out 1, for the API and worker processes
together:

* ``postgres_db_cpu_us_per_delivery``: the PostgreSQL server's CPU (user + system of every
  ``postgres`` process, postmaster and backends, read with psutil at the start and the end
  of the measured window) per delivery, from the ``fanout1`` case;
* ``postgres_round_trips_per_delivery``: client↔server round trips (``Sync`` + simple
  ``Query`` messages) per delivery, from ``round_trips``: one more fan-out 1 run (2,000
  events; 500 with ``--quick``, 200 with ``--smoke``) whose database URL points at the
  counting proxy of ``bench/pgproxy.py`` instead of PostgreSQL, counted over the same
  window (publishing starts → last delivery received). The proxy costs time, so that run
  reports nothing else.
"""

from __future__ import annotations

from bench import e2e
from bench.e2e import FANOUT_KEYS, PER_CASE, E2ECase
from bench.harness import Metric, Options

NAME = "postgres"
TITLE = "End to end on PostgreSQL: HTTP publish → PostgreSQL → signed delivery"

METRICS: dict[str, Metric] = {
    **{f"postgres_{k}": PER_CASE[k] for k in FANOUT_KEYS},
    "postgres_server_cpu_s": PER_CASE["server_cpu_s"],
    "postgres_db_cpu_s": PER_CASE["db_cpu_s"],
    "postgres_db_cpu_us_per_delivery": Metric("PostgreSQL server CPU per delivery", "µs"),
    "postgres_round_trips_per_delivery": Metric(
        "round trips to PostgreSQL per delivery (API + worker; via `bench/pgproxy.py`)", "", 2
    ),
    **{f"postgres_fanout5_{k}": PER_CASE[k] for k in FANOUT_KEYS},
}
e2e.register(NAME, METRICS)


def cases(options: Options) -> list[E2ECase]:
    quick = options.quick
    n1 = options.events or (200 if options.smoke else 1_000 if quick else 10_000)
    n5 = max(1, n1 // 5) if options.events or options.smoke else (200 if quick else 2_000)
    warmup = 0 if n1 < 1000 else (100 if quick else 500)
    # the proxied run counts messages, not speed: a fixed, smaller size is enough
    trips = 200 if options.smoke else 500 if quick else 2_000
    trips = min(trips, options.events or trips)
    trips_warmup = 0 if options.smoke else 100
    c = options.concurrency
    return [
        E2ECase("fanout1", "postgres_", "", 1, n1, warmup, c, scenario=NAME, store="postgres"),
        E2ECase(
            "round_trips",
            "postgres_",
            "",
            1,
            trips,
            trips_warmup,
            c,
            scenario=NAME,
            store="postgres",
            pg_proxy=True,
        ),
        E2ECase(
            "fanout5", "postgres_fanout5_", "", 5, n5, warmup, c, scenario=NAME, store="postgres"
        ),
    ]
