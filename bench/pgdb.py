"""A throwaway PostgreSQL database per run, for the PostgreSQL scenario.

:func:`fresh_database` connects to ``BENCH_PG_ADMIN_URL`` (default
``postgresql://postgres@127.0.0.1:5432/postgres``), creates ``hookcast_bench_<random>``,
runs ``hookcast migrate`` on it and yields its URL; on the way out it drops it (``WITH
(FORCE)``, so a server that is still connected cannot keep it alive). When PostgreSQL is not
reachable, or the migration fails (the PostgreSQL store not built yet), it raises
:class:`Unavailable` with the reason, which the scenario records next to a null figure.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import subprocess
from collections.abc import Iterator
from urllib.parse import urlsplit, urlunsplit

from bench.gateway import HOOKCAST
from bench.machine import pg_admin_url


class Unavailable(RuntimeError):
    """PostgreSQL, or hookcast's PostgreSQL store, cannot be used for this run."""


def _with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "/" + name, parts.query, parts.fragment))


@contextlib.contextmanager
def fresh_database() -> Iterator[str]:
    try:
        import psycopg
    except ImportError as exc:  # pragma: no cover - psycopg is one of hookcast's dependencies
        raise Unavailable(f"psycopg is not installed: {exc}") from exc
    admin = pg_admin_url()
    name = "hookcast_bench_" + secrets.token_hex(6)
    try:
        with psycopg.connect(admin, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
    except psycopg.Error as exc:
        raise Unavailable(f"PostgreSQL at {_redacted(admin)} is not usable: {exc}") from exc
    url = _with_database(admin, name)
    try:
        migrated = subprocess.run(
            [*HOOKCAST, "migrate", "--json", "--database-url", url],
            env=dict(os.environ),
            capture_output=True,
            timeout=120,
            check=False,
        )
        if migrated.returncode != 0:
            why = migrated.stderr.decode(errors="replace").strip().splitlines()
            raise Unavailable(
                "`hookcast migrate` failed on a fresh PostgreSQL database: "
                + (why[-1] if why else f"exit {migrated.returncode}")
            )
        yield url
    finally:
        with (
            contextlib.suppress(psycopg.Error),
            psycopg.connect(admin, autocommit=True, connect_timeout=5) as conn,
        ):
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _redacted(url: str) -> str:
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    user = f"{parts.username}@" if parts.username else ""
    return urlunsplit((parts.scheme, user + host + port, parts.path, "", ""))
