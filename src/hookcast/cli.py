"""The ``hookcast`` command. Thin: parse, build settings once, call bootstrap or admin."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ipaddress
import os
import shlex
import shutil
import socket
import sys
from collections.abc import Awaitable, Callable, Coroutine
from types import ModuleType
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import orjson

from hookcast import __version__, apiclient, logs, progress
from hookcast.domain.errors import HookcastError
from hookcast.domain.models import KeyRole
from hookcast.settings import Settings
from hookcast.store.urls import is_postgres, sqlite_path

T = TypeVar("T")

#: what the remote commands read when --project is not given (``project create --env``
#: exports it, with HOOKCAST_API_KEY)
PROJECT_ENV = "HOOKCAST_PROJECT_ID"
DATABASE_ENV = "HOOKCAST_DATABASE_URL"
#: where the CLI looks for a gateway when neither --url nor HOOKCAST_API_URL says
DEFAULT_URL = "http://127.0.0.1:5005"


def _run(coro: Coroutine[Any, Any, T]) -> T:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency off Windows
        return asyncio.run(coro)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(coro)


def _bootstrap() -> ModuleType:
    """The server's modules, imported by the commands that run or open it: the API
    client's commands start in a third of the time without them."""
    from hookcast import bootstrap

    return bootstrap


def _admin() -> ModuleType:
    from hookcast.api import admin

    return admin


def _settings(args: argparse.Namespace) -> Settings:
    overrides: dict[str, Any] = {}
    for name in ("database_url", "host", "port"):
        value = getattr(args, name, None)
        if value is not None:
            overrides[name] = value
    return Settings(**overrides)


def plural(n: int, one: str, many: str) -> str:
    """``1 delivery``, ``2 deliveries``, ``1,000 deliveries``."""
    return f"{n:,} {one if n == 1 else many}"


def _prog() -> str:
    """How to call this hookcast again in a command the user may copy: ``hookcast`` when
    that is what the shell finds, else the path it was started by (``.venv/bin/hookcast``
    outside the virtualenv)."""
    argv0 = sys.argv[0] if sys.argv else ""
    if os.path.basename(argv0) != "hookcast":
        return "hookcast"
    found = shutil.which("hookcast")
    if found and os.path.realpath(found) == os.path.realpath(argv0):
        return "hookcast"
    return shlex.quote(os.path.abspath(argv0))


def _env_set(name: str) -> bool:
    """Whether the environment sets *name* (as the settings read it: any case)."""
    return any(k.upper() == name and v for k, v in os.environ.items())


def shown_database(url: str) -> str:
    """The database URL to show: a SQLite file by its absolute path (what
    ``--database-url`` takes from any directory), a PostgreSQL URL without its password."""
    if is_postgres(url):
        parts = urlsplit(url)
        if parts.password is None:
            return url
        netloc = parts.netloc.rsplit("@", 1)
        user = netloc[0].split(":", 1)[0]
        return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc[1]}"))
    path = sqlite_path(url)
    return url if path == ":memory:" else "sqlite:///" + os.path.abspath(path)


def _database(args: argparse.Namespace, *, note: bool = True) -> Settings:
    """The settings of a command that opens the database, once it is sure to be the one
    meant. A SQLite file that does not exist yet is created only when the database was
    named (--database-url, HOOKCAST_DATABASE_URL) or --create-database says so: the
    default, ./hookcast.db, is another file in every directory, and the keys made in a
    new one are refused by a server running on another. With *note*, says on stderr
    which database it is (stdout stays the command's output, --json or --env)."""
    settings = _settings(args)
    url = settings.database_url
    new = False
    if not is_postgres(url):
        path = sqlite_path(url)
        new = path != ":memory:" and not os.path.exists(path)
        named = bool(args.database_url) or _env_set(DATABASE_ENV)
        if new and not named and not getattr(args, "create_database", False):
            raise HookcastError(_no_database(args, path))
    if note:
        suffix = " (new: created by this command)" if new else ""
        sys.stderr.write(f"hookcast: database {shown_database(url)}{suffix}\n")
    return settings


def _no_database(args: argparse.Namespace, path: str) -> str:
    again = " ".join([_prog(), *map(shlex.quote, args.argv)])
    return (
        f"there is no database at {os.path.abspath(path)} (./{path}, the default in this "
        "directory): this command would create a new, empty one, whose keys a server "
        "running on another database refuses.\n"
        "  To use your server's database, run this in the server's directory or name it:\n"
        f"    {again} --database-url sqlite:////path/to/the/server/hookcast.db\n"
        "  To create a new database here:\n"
        f"    {again} --create-database"
    )


def _print(args: argparse.Namespace, doc: dict[str, Any], text: str) -> None:
    if getattr(args, "json", False):
        sys.stdout.write(orjson.dumps(doc).decode() + "\n")
    else:
        sys.stdout.write(text + "\n")


async def _with_store(settings: Settings, fn: Callable[[Any], Awaitable[T]]) -> T:
    bootstrap = _bootstrap()
    bootstrap.run_migrations(settings)
    store = bootstrap.build_store(settings)
    await store.open()
    try:
        return await fn(store.records)
    finally:
        await store.close()


def cmd_serve(args: argparse.Namespace) -> int:
    if args.no_worker and args.workers:
        raise HookcastError("--no-worker and --workers N contradict each other: choose one")
    settings = _settings(args)
    logs.configure(settings.log_level, "text" if args.text_logs else settings.log_format)
    bootstrap = _bootstrap()
    revision = bootstrap.run_migrations(settings)
    import logging

    workers, why = bootstrap.process_layout(args.workers, no_worker=args.no_worker)
    logging.getLogger("hookcast").info(
        "hookcast.starting",
        extra={
            "version": __version__,
            "database": settings.database_url,
            "schema": revision,
            "worker": not args.no_worker,
            "worker_processes": workers,
            "layout": why,
        },
    )
    serving = bootstrap.serve(
        settings, api=True, worker=not args.no_worker, worker_processes=workers
    )
    if settings.port == 0 or _accepting(settings):  # its port is taken: serve will say so
        _run(serving)
    else:
        _run(_greeting_when_up(settings, serving))
    return 0


def _local_url(settings: Settings) -> str:
    return f"http://{_reachable(settings.host)}:{settings.port}"


def _accepting(settings: Settings) -> bool:
    """Whether something already answers on the API's address."""
    try:
        with socket.create_connection((_reachable(settings.host).strip("[]"), settings.port), 0.5):
            return True
    except OSError:
        return False


async def _greeting_when_up(settings: Settings, serving: Coroutine[Any, Any, None]) -> None:
    """Run *serving*; once its port answers, say on stderr (besides the structured log)
    where the dashboard is and what to do next."""
    task = asyncio.ensure_future(serving)
    host = _reachable(settings.host).strip("[]")

    async def greet() -> None:
        while not task.done():
            try:
                _, writer = await asyncio.wait_for(
                    asyncio.open_connection(host, settings.port), 1.0
                )
            except (OSError, TimeoutError):
                await asyncio.sleep(0.05)
                continue
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
            sys.stderr.write(greeting(settings))
            sys.stderr.flush()
            return

    greeter = asyncio.ensure_future(greet())
    try:
        await task
    finally:
        greeter.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await greeter


def greeting(settings: Settings) -> str:
    """What ``hookcast serve`` tells a person once it listens: the dashboard's URL and the
    command that makes a first project (against this server's database, from any
    directory, and setting what the other commands read)."""
    url = _local_url(settings)
    db = shown_database(settings.database_url)
    create = f"{_prog()} project create demo --env"
    where = "in another terminal"
    if is_postgres(settings.database_url):
        where += f" with {DATABASE_ENV} set to this database"
    else:
        create += f" --database-url {shlex.quote(db)}"
    if url != DEFAULT_URL:
        create += f" --url {url}"
    return (
        f"hookcast: serving {url} (database {db})\n"
        f"hookcast: dashboard: {url}/dashboard/ (sign in with an API key)\n"
        f'hookcast: next, {where}: eval "$({create})"\n'
    )


def cmd_worker(args: argparse.Namespace) -> int:
    bootstrap = _bootstrap()
    parent = os.environ.get(bootstrap.PARENT_ENV)
    if parent:
        bootstrap.follow_parent(int(parent))
    settings = _database(args, note=False)
    logs.configure(settings.log_level, "text" if args.text_logs else settings.log_format)
    if not parent:  # a worker process of a serve: that serve has just migrated
        bootstrap.run_migrations(settings)
        import logging

        logging.getLogger("hookcast").info(
            "worker.starting", extra={"database": shown_database(settings.database_url)}
        )
    _run(bootstrap.serve(settings, api=False, worker=True))
    return 0


def cmd_migrate(args: argparse.Namespace) -> int:
    settings = _database(args)
    revision = _bootstrap().run_migrations(settings, newer_ok=False)
    _print(args, {"revision": revision}, f"schema is at revision {revision}")
    return 0


def _broadcast_note(can: bool, project_id: str) -> str:
    if can:
        return "this key can broadcast (granted by --broadcast)"
    return (
        "this key cannot broadcast (a permission granted explicitly); for a key that can: "
        f"hookcast apikey create --project {project_id} --broadcast"
    )


def _same_name_warning(name: str, others: list[Any]) -> str:
    ids = ", ".join(p.id for p in others[:3]) + (", …" if len(others) > 3 else "")
    which = "another project is" if len(others) == 1 else f"{len(others):,} other projects are"
    return (
        f"hookcast: warning: {which} already named {name.strip()!r} ({ids}); names need not "
        "be unique, the commands and the API take the project id\n"
    )


def cmd_project_create(args: argparse.Namespace) -> int:
    if args.env and args.json:
        raise HookcastError("--env and --json: choose one")
    config = orjson.loads(args.config) if args.config else None
    settings = _database(args)

    async def go(store: Any) -> tuple[list[Any], Any, Any, str]:
        same = await _admin().projects_named(store, args.name)
        made = await _admin().create_project(
            store, args.name, config=config, can_broadcast=args.broadcast
        )
        return same, *made

    same, project, key, token = _run(_with_store(settings, go))
    if same:
        sys.stderr.write(_same_name_warning(args.name, same))
    note = _broadcast_note(key.can_broadcast, project.id)
    if args.env:
        exports = {PROJECT_ENV: project.id, "HOOKCAST_API_KEY": token}
        if args.url:
            exports["HOOKCAST_API_URL"] = args.url
        for name, value in exports.items():
            sys.stdout.write(f"export {name}={shlex.quote(value)}\n")
        sys.stderr.write(
            f"project {project.id} ({project.name}) created; the lines for eval set "
            f"{', '.join(exports)} (its first key, role admin, is shown only there)\n{note}\n"
        )
        return 0
    _print(
        args,
        {
            "project_id": project.id,
            "name": project.name,
            "api_key": token,
            "broadcast": key.can_broadcast,
        },
        f"project {project.id} ({project.name}) created\n"
        f"api key (role admin, shown once): {token}\n{note}",
    )
    return 0


def cmd_project_list(args: argparse.Namespace) -> int:
    settings = _database(args)
    projects = _run(_with_store(settings, lambda s: s.list_projects()))
    rows = [{"project_id": p.id, "name": p.name} for p in projects]
    if args.json:
        sys.stdout.write(orjson.dumps(rows).decode() + "\n")
    elif not rows:
        sys.stdout.write("no projects yet: hookcast project create NAME\n")
    else:
        for row in rows:
            sys.stdout.write(f"{row['project_id']}  {row['name']}\n")
    return 0


def cmd_apikey_create(args: argparse.Namespace) -> int:
    if args.admin == bool(args.project):
        raise HookcastError("give either --project ID or --admin")
    settings = _database(args)
    role = KeyRole.INSTANCE_ADMIN if args.admin else KeyRole(args.role)
    expires = None
    if args.expires_in_days:
        import time

        expires = time.time_ns() // 1000 + int(args.expires_in_days * 86_400 * 1_000_000)

    async def go(store: Any) -> tuple[Any, str]:
        made: tuple[Any, str] = await _admin().create_api_key(
            store,
            project_id=args.project,
            role=role,
            can_broadcast=args.broadcast,
            name=args.name or "",
            expires_at_us=expires,
        )
        return made

    key, token = _run(_with_store(settings, go))
    broadcast = "can broadcast" if key.can_broadcast else "cannot broadcast"
    _print(
        args,
        {
            "key_id": key.id,
            "api_key": token,
            "project_id": key.project_id,
            "role": role.value,
            "broadcast": key.can_broadcast,
        },
        f"api key {key.id} ({role.value}, {broadcast}) created\napi key (shown once): {token}",
    )
    return 0


def _key_row(key: Any, now_us: int) -> dict[str, Any]:
    from hookcast.api.routes.keys import key_json

    return {"key_id": key.id, **key_json(key, now_us)}


def cmd_apikey_list(args: argparse.Namespace) -> int:
    """Keys of a project (every key without --project); never their secrets."""
    import time

    settings = _database(args)
    keys = _run(_with_store(settings, lambda s: _admin().list_api_keys(s, args.project)))
    now = time.time_ns() // 1000
    rows = [_key_row(k, now) for k in keys]
    if args.json:
        sys.stdout.write(orjson.dumps(rows).decode() + "\n")
        return 0
    for row in rows:
        flags = " broadcast" if row["broadcast"] else ""
        sys.stdout.write(
            f"{row['key_id']}  {row['role']}{flags}  {row['status']}  "
            f"project={row['project_id'] or '-'}  {row['name']}\n"
        )
    return 0


def cmd_apikey_revoke(args: argparse.Namespace) -> int:
    import time

    settings = _database(args)
    key = _run(_with_store(settings, lambda s: _admin().revoke_api_key(s, args.key_id)))
    row = _key_row(key, time.time_ns() // 1000)
    _print(args, row, f"api key {key.id} revoked (API processes drop it within 1 s)")
    return 0


# ------------------------------------------------------------------ remote commands


def _client(args: argparse.Namespace) -> apiclient.ApiClient:
    """For the remote commands: --url/--key, else HOOKCAST_API_URL/HOOKCAST_API_KEY, else
    this machine's gateway (HOOKCAST_HOST/PORT) and HOOKCAST_ADMIN_API_KEY."""
    settings = Settings()
    url = args.url or settings.api_url or _local_url(settings)
    key = args.key or settings.api_key or settings.admin_api_key
    return apiclient.ApiClient(url, key)


def _key_source(args: argparse.Namespace) -> str:
    """Where the key sent comes from ("" when none is sent)."""
    if getattr(args, "key", None):
        return "--key"
    settings = Settings()
    if settings.api_key:
        return "HOOKCAST_API_KEY"
    return "HOOKCAST_ADMIN_API_KEY" if settings.admin_api_key else ""


async def _project(args: argparse.Namespace, client: apiclient.ApiClient) -> str:
    """The project of a remote command: --project, else HOOKCAST_PROJECT_ID, else the
    project of the key (a project key reaches exactly one). Noted in *args*."""
    if args.project:
        args.project_from = "--project"
        return str(args.project)
    from_env = os.environ.get(PROJECT_ENV, "").strip()
    if from_env:
        args.project, args.project_from = from_env, PROJECT_ENV
        return from_env
    reached = await apiclient.key_projects(client)
    if len(reached) == 1:
        args.project, args.project_from = reached[0], "the key"
        return reached[0]
    if not reached:
        raise HookcastError(
            f"this key reaches no project: create one (hookcast project create NAME --env) "
            f"or give --project ID ({PROJECT_ENV})"
        )
    raise HookcastError(
        f"this key reaches {len(reached):,} projects (an instance admin key): "
        f"give --project ID or set {PROJECT_ENV}"
    )


def _remote_call(
    args: argparse.Namespace, fn: Callable[[apiclient.ApiClient, str], Awaitable[T]]
) -> T:
    """Open a client, find the project, run *fn(client, project_id)*."""

    async def go() -> T:
        async with _client(args) as client:
            return await fn(client, await _project(args, client))

    return _run(go())


def _api_hint(args: argparse.Namespace, exc: apiclient.ApiClientError) -> str:
    """What to do about an error answer of the gateway, in the CLI's terms."""
    project = getattr(args, "project", None) or "<project id>"
    source = _key_source(args)
    if exc.status == 401:
        if not source:
            return (
                "no API key was given: pass --key KEY or set HOOKCAST_API_KEY "
                '(eval "$(hookcast project create NAME --env)" creates a project and sets it)'
            )
        return (
            f"the API key from {source} was refused: pass a key of this server with --key KEY "
            "or HOOKCAST_API_KEY (a key belongs to the database it was created in)"
        )
    if exc.status == 403:
        if "broadcast" in exc.message:
            if "apikey create" in exc.message:  # the gateway says how to make one
                return "then pass that key with --key KEY or HOOKCAST_API_KEY"
            return (
                f"make a key that may broadcast with `hookcast apikey create --project {project} "
                "--broadcast` and pass it with --key KEY or HOOKCAST_API_KEY"
            )
        return (
            f"the key from {source or '?'} lacks the role for this: pass an admin key of the "
            f"project with --key KEY or HOOKCAST_API_KEY (`hookcast apikey create --project "
            f"{project}` makes one)"
        )
    if exc.status == 404 and "project not found" in exc.message.lower():
        origin = getattr(args, "project_from", "--project")
        return (
            f"project {project} (from {origin}) is not one the key from {source or '?'} "
            f"reaches: give the key's project with --project or {PROJECT_ENV}, or neither "
            "to use the key's own"
        )
    return ""


def _reachable(host: str) -> str:
    """The address to call a gateway listening on *host* from this machine."""
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return host or "127.0.0.1"
    if ip.is_unspecified:
        return "127.0.0.1"
    return f"[{ip}]" if ip.version == 6 else str(ip)


def _json_arg(text: str, name: str) -> Any:
    if text == "-":
        text = sys.stdin.read()
    elif text.startswith("@"):
        with open(text[1:], "rb") as f:
            text = f.read().decode()
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise HookcastError(f"{name} is not valid JSON: {exc}") from exc


def _headers(values: list[str] | None) -> dict[str, str] | None:
    if not values:
        return None
    pairs = [v.split(":", 1) for v in values]
    if any(len(pair) != 2 for pair in pairs):
        raise HookcastError("--header takes NAME:VALUE")
    return {name.strip(): value.strip() for name, value in pairs}


def cmd_send(args: argparse.Namespace) -> int:
    data = _json_arg(args.data, "--data")
    headers = _headers(args.header)

    async def go(client: apiclient.ApiClient, project_id: str) -> dict[str, Any]:
        publish = apiclient.Publish(
            project_id=project_id,
            event_type=args.type,
            data=data,
            endpoint_id=args.endpoint or "",
            owner_id=args.owner or "",
            broadcast=args.broadcast,
            idempotency_key=args.idempotency_key or "",
            headers=headers,
        )
        return await apiclient.send(client, publish)

    event = _remote_call(args, go)
    if args.wait and args.broadcast and not event.get("is_duplicate_event"):
        bar = progress.Progress("broadcast", enabled=not args.quiet)

        async def watch() -> dict[str, Any]:
            async with _client(args) as client:
                return await apiclient.wait_broadcast(
                    client, args.project, str(event.get("uid")), bar.update, timeout_s=args.timeout
                )

        summary = _run(watch())
        bar.finish()
        event["broadcast"] = summary
        text = (
            f"broadcast {event.get('uid')}: {summary.get('succeeded', 0):,} delivered, "
            f"{summary.get('failed', 0):,} failed, {summary.get('skipped', 0):,} skipped"
        )
        _print(args, event, text)
        return 0
    if event.get("is_duplicate_event"):
        text = f"event {event.get('uid')} is a duplicate: not sent"
    elif event.get("kind") == "broadcast":
        text = f"event {event.get('uid')} (broadcast) accepted: its deliveries follow"
    else:
        count = int(event.get("deliveries", 0) or 0)
        text = f"event {event.get('uid')} ({event.get('kind')}) queued: "
        text += plural(count, "delivery", "deliveries")
        if count == 0 and event.get("kind") == "fanout":
            text += f" (no endpoint of owner {args.owner} is subscribed to {args.type})"
    _print(args, event, text)
    return 0


def _batch_query(args: argparse.Namespace) -> dict[str, str]:
    query: dict[str, str] = {}
    pairs = [("endpointId", args.endpoint), ("startDate", args.since), ("endDate", args.until)]
    if getattr(args, "kind", "") == "retry":
        pairs += [("status", args.status), ("eventId", args.event), ("eventType", args.type)]
    for name, value in pairs:
        if value:
            query[name] = value
    return query


#: delivery statuses still on their way: a batch retry leaves them where they are
_QUEUED = ("Scheduled", "Retry", "Processing")


def batch_note(args: argparse.Namespace, job: dict[str, Any]) -> str:
    """Why a finished batch requeued nothing (or fewer than it matched); "" when it did
    what it was asked."""
    matched, requeued = int(job.get("processed", 0)), int(job.get("requeued", 0))
    scope = "".join(
        f" {label} {value}"
        for label, value in (
            ("of endpoint", args.endpoint),
            ("of event", getattr(args, "event", None)),
            ("of type", getattr(args, "type", None)),
        )
        if value
    )
    window = (
        f" created from {args.since or '7 days ago (the default; --since goes further back)'}"
        f" to {args.until or 'the end of today'}"
    )
    if args.kind == "retry":
        status = args.status
        if matched == 0:
            return f"nothing matched: no {status} deliveries{scope}{window}"
        if requeued >= matched:
            return ""
        if status in _QUEUED:
            return (
                f"deliveries in {status} are already queued: the worker sends them on their "
                "schedule (follow them with hookcast tail); retry requeues finished ones "
                "(Failure, Discarded)"
            )
        if status == "Success":
            return "Success deliveries are not retried: hookcast replay sends their events again"
        return (
            f"{plural(matched - requeued, 'delivery was', 'deliveries were')} no longer "
            f"{status} when the job reached them (delivered or requeued meanwhile)"
        )
    if matched == 0:
        return f"nothing matched: no events{scope}{window}"
    if requeued == 0:
        those = "that event" if matched == 1 else "those events"
        return (
            f"the deliveries of {those} are still queued or in flight: an event is replayed "
            "once its deliveries are finished"
        )
    return ""


def cmd_batch(args: argparse.Namespace) -> int:
    """``hookcast retry`` and ``hookcast replay``: start a batch job, wait with a bar."""
    bar = progress.Progress(args.kind, enabled=not args.quiet)

    async def go(client: apiclient.ApiClient, project_id: str) -> dict[str, Any]:
        job_id = await apiclient.start_batch(client, project_id, args.kind, _batch_query(args))
        if args.no_wait:
            return {"uid": job_id, "status": "queued"}
        return await apiclient.wait_batch(
            client, project_id, job_id, bar.update, timeout_s=args.timeout
        )

    job = _remote_call(args, go)
    if args.no_wait:
        _print(args, job, f"batch {args.kind} {job['uid']} started; it runs in the background")
        return 0
    bar.finish()
    verb = "requeued" if args.kind == "retry" else "replayed"
    text = (
        f"batch {args.kind} {job.get('uid')} done: {job.get('processed', 0):,} matched, "
        f"{job.get('requeued', 0):,} {verb}"
    )
    note = batch_note(args, job)
    if note:
        job["note"] = note
        text += f"\n{note}"
    _print(args, job, text)
    return 0


def cmd_tail(args: argparse.Namespace) -> int:
    options = apiclient.TailOptions(
        interval_s=args.interval, backlog=args.backlog, max_lines=args.max, seconds=args.seconds
    )

    def out(d: dict[str, Any]) -> None:
        line = orjson.dumps(d).decode() if args.json else apiclient.delivery_line(d)
        sys.stdout.write(line + "\n")
        sys.stdout.flush()

    def warn(message: str) -> None:
        sys.stderr.write(f"hookcast: {message} (retrying)\n")

    async def go(client: apiclient.ApiClient, project_id: str) -> int:
        return await apiclient.tail(client, project_id, options, out, on_error=warn)

    _remote_call(args, go)
    return 0


# ------------------------------------------------------------------ endpoints, subscriptions


def _endpoint_line(e: dict[str, Any]) -> str:
    return (
        f"{e.get('uid')}  {e.get('status', ''):<8}  {e.get('url', '')}  "
        f"owner={e.get('owner_id') or '-'}  {e.get('name', '')}"
    )


def _secret(e: dict[str, Any]) -> str:
    secrets = [s for s in e.get("secrets") or [] if isinstance(s, dict) and not s.get("expires_at")]
    return str(secrets[-1].get("value", "")) if secrets else ""


def _created(args: argparse.Namespace, doc: dict[str, Any], text: str) -> int:
    if args.quiet:
        sys.stdout.write(f"{doc.get('uid')}\n")
    else:
        _print(args, doc, text)
    return 0


def cmd_endpoint_create(args: argparse.Namespace) -> int:
    fields = {
        "url": args.target,
        "name": args.name,
        "owner_id": args.owner,
        "description": args.description,
        "secret": args.secret,
        "http_timeout": args.http_timeout,
    }
    body = {k: v for k, v in fields.items() if v is not None}
    e = _remote_call(
        args, lambda c, p: apiclient.one(c, "POST", apiclient.project_path(p, "endpoints"), body)
    )
    owner = f" (owner {e['owner_id']})" if e.get("owner_id") else ""
    text = f"endpoint {e.get('uid')} created: {e.get('url')}{owner}\nsigning secret: {_secret(e)}"
    if e.get("owner_id"):
        text += (
            f"\nevents sent with --owner {e['owner_id']} reach it once it is subscribed: "
            f"hookcast subscription create --endpoint {e.get('uid')}"
        )
    return _created(args, e, text)


def _list(args: argparse.Namespace, what: str, params: dict[str, str]) -> list[dict[str, Any]]:
    async def go(client: apiclient.ApiClient, project_id: str) -> list[dict[str, Any]]:
        path = apiclient.project_path(project_id, what)
        items, more = await apiclient.list_all(client, path, params, limit=args.limit)
        if more:
            sys.stderr.write(f"hookcast: the first {plural(len(items), what[:-1], what)}; ")
            sys.stderr.write("--limit N shows more\n")
        return items

    return _remote_call(args, go)


def cmd_endpoint_list(args: argparse.Namespace) -> int:
    items = _list(args, "endpoints", {"ownerId": args.owner} if args.owner else {})
    if args.json:
        sys.stdout.write(orjson.dumps(items).decode() + "\n")
    elif not items:
        sys.stdout.write(f"no endpoints in project {args.project}: hookcast endpoint create URL\n")
    else:
        sys.stdout.write("".join(_endpoint_line(e) + "\n" for e in items))
    return 0


def _endpoint(args: argparse.Namespace, method: str, action: str = "") -> dict[str, Any]:
    def call(client: apiclient.ApiClient, project_id: str) -> Awaitable[dict[str, Any]]:
        parts = ("endpoints", args.endpoint_id, *((action,) if action else ()))
        return apiclient.one(client, method, apiclient.project_path(project_id, *parts))

    return _remote_call(args, call)


def cmd_endpoint_get(args: argparse.Namespace) -> int:
    e = _endpoint(args, "GET")
    status = str(e.get("status", ""))
    if e.get("disabled_reason") and status != "active":
        status += f" ({e['disabled_reason']})"
    rows = [
        ("endpoint", e.get("uid")),
        ("name", e.get("name")),
        ("url", e.get("url")),
        ("owner", e.get("owner_id") or "-"),
        ("status", status),
        ("signing secret", _secret(e)),
        ("created", e.get("created_at")),
    ]
    _print(args, e, "\n".join(f"{k + ':':<16}{v}" for k, v in rows))
    return 0


def cmd_endpoint_pause(args: argparse.Namespace) -> int:
    """Pause (the API's ``/pause`` toggles: an endpoint already paused is left so)."""

    async def go(client: apiclient.ApiClient, project_id: str) -> tuple[bool, dict[str, Any]]:
        path = apiclient.project_path(project_id, "endpoints", args.endpoint_id)
        e = await apiclient.one(client, "GET", path)
        if e.get("status") == "paused":
            return False, e
        return True, await apiclient.one(client, "PUT", path + "/pause")

    changed, e = _remote_call(args, go)
    text = (
        f"endpoint {e.get('uid')} paused: events for it are discarded until "
        f"hookcast endpoint activate {e.get('uid')}"
        if changed
        else f"endpoint {e.get('uid')} was already paused"
    )
    _print(args, e, text)
    return 0


def cmd_endpoint_activate(args: argparse.Namespace) -> int:
    e = _endpoint(args, "POST", "activate")
    _print(args, e, f"endpoint {e.get('uid')} is {e.get('status')}")
    return 0


def cmd_endpoint_delete(args: argparse.Namespace) -> int:
    _endpoint(args, "DELETE")
    _print(args, {"uid": args.endpoint_id, "deleted": True}, f"endpoint {args.endpoint_id} deleted")
    return 0


def _types(s: dict[str, Any]) -> str:
    types = (s.get("filter_config") or {}).get("event_types") or ["*"]
    return ",".join(str(t) for t in types)


def cmd_subscription_create(args: argparse.Namespace) -> int:
    types = args.event_type or ["*"]
    body: dict[str, Any] = {
        "name": args.name or ("all events" if types == ["*"] else ", ".join(types)),
        "endpoint_id": args.endpoint,
        "filter_config": {"event_types": types},
    }
    docs = {
        part: _json_arg(value, f"--filter-{part}")
        for part, value in (("body", args.filter_body), ("headers", args.filter_headers))
        if value
    }
    if docs:
        body["filter_config"]["filter"] = docs
    s = _remote_call(
        args,
        lambda c, p: apiclient.one(c, "POST", apiclient.project_path(p, "subscriptions"), body),
    )
    text = (
        f"subscription {s.get('uid')} created: endpoint {s.get('endpoint_id')} gets "
        f"{'every event' if _types(s) == '*' else _types(s) + ' events'}"
        f"{' that match the filter' if docs else ''}"
    )
    return _created(args, s, text)


def cmd_subscription_list(args: argparse.Namespace) -> int:
    items = _list(args, "subscriptions", {"endpointId": args.endpoint} if args.endpoint else {})
    if args.json:
        sys.stdout.write(orjson.dumps(items).decode() + "\n")
    elif not items:
        sys.stdout.write(
            f"no subscriptions in project {args.project}: "
            "hookcast subscription create --endpoint ID\n"
        )
    else:
        for s in items:
            sys.stdout.write(
                f"{s.get('uid')}  endpoint={s.get('endpoint_id')}  types={_types(s)}  "
                f"{s.get('name', '')}\n"
            )
    return 0


def cmd_subscription_delete(args: argparse.Namespace) -> int:
    path = ("subscriptions", args.subscription_id)
    _remote_call(args, lambda c, p: apiclient.one(c, "DELETE", apiclient.project_path(p, *path)))
    doc = {"uid": args.subscription_id, "deleted": True}
    _print(args, doc, f"subscription {args.subscription_id} deleted")
    return 0


# ------------------------------------------------------------------ the outbox


def cmd_outbox_install(args: argparse.Namespace) -> int:
    from hookcast.outbox.install import install
    from hookcast.outbox.table import OutboxTable

    table = OutboxTable(args.schema)
    if not is_postgres(args.database_url):
        raise HookcastError(
            "--database-url: give the application's PostgreSQL database (postgresql://...)"
        )
    created = _run(install(args.database_url, table))
    doc = {"table": table.name, "channel": table.channel, "created": created}
    state = "created" if created else "already there, unchanged"
    _print(args, doc, f"outbox table {table.name} {state} (NOTIFY channel {table.channel})")
    return 0


async def _relay_project(args: argparse.Namespace, client: apiclient.ApiClient) -> str:
    """The relay's default project; "" when the key reaches several (rows then name theirs)."""
    try:
        return await _project(args, client)
    except apiclient.ApiClientError:
        raise
    except HookcastError as exc:
        import logging

        logging.getLogger("hookcast.outbox").warning(
            "relay.no_default_project", extra={"reason": exc.message}
        )
        return ""


def cmd_relay(args: argparse.Namespace) -> int:
    import logging
    import signal

    from hookcast.outbox.relay import Relay, RelayOptions
    from hookcast.outbox.table import OutboxTable

    if not is_postgres(args.source_url):
        raise HookcastError("--source-url: give the application's PostgreSQL database")
    table = OutboxTable(args.schema)
    settings = Settings()
    logs.configure(settings.log_level, "text" if args.text_logs else settings.log_format)
    options = RelayOptions(
        batch=args.batch,
        concurrency=args.concurrency,
        lanes=args.lanes,
        poll_interval_s=args.poll_interval,
        drain=args.drain,
    )
    log = logging.getLogger("hookcast.outbox")

    async def go() -> Any:
        async with _client(args) as client:
            project = await _relay_project(args, client)
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, stop.set)
            log.info(
                "relay.starting",
                extra={
                    "source": shown_database(args.source_url),
                    "table": table.name,
                    "project": project,
                },
            )
            return await Relay(args.source_url, client, project, table, options).run(stop)

    total = _run(go())
    log.info("relay.stopped", extra=vars(total))
    return 0


def _add_outbox_commands(sub: Any) -> None:
    """``outbox install`` and ``relay``: the transactional outbox (docs/outbox.md)."""
    outbox = sub.add_parser(
        "outbox", help="the transactional outbox in your application's database"
    ).add_subparsers(dest="action", required=True)
    p = outbox.add_parser("install", help="create the outbox table (idempotent)")
    p.add_argument("--database-url", required=True, help="your application's postgresql://...")
    p.add_argument("--schema", default="public", help="the table's schema (public)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(fn=cmd_outbox_install)

    p = sub.add_parser("relay", help="publish the outbox's committed events into hookcast")
    p.add_argument("--source-url", required=True, help="your application's postgresql://...")
    p.add_argument("--schema", default="public", help="the outbox table's schema (public)")
    _remote(p)
    p.add_argument("--batch", type=int, default=200, metavar="N", help="rows per transaction")
    p.add_argument(
        "--concurrency", type=int, default=64, help="publish calls in flight per lane (64)"
    )
    p.add_argument("--lanes", type=int, default=2, help="batches in flight at once (2)")
    p.add_argument("--poll-interval", type=float, default=1.0, metavar="S", help="poll every S s")
    p.add_argument("--drain", action="store_true", help="stop once no row is due")
    p.add_argument("--text-logs", action="store_true", help="human-readable logs")
    p.set_defaults(fn=cmd_relay)


# ------------------------------------------------------------------ the parser


def _remote(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--project",
        help=f"the project ID (default {PROJECT_ENV}, else the project of a project key)",
    )
    p.add_argument("--url", help=f"the gateway (default HOOKCAST_API_URL or {DEFAULT_URL})")
    p.add_argument("--key", help="an API key (default HOOKCAST_API_KEY or the admin key)")
    p.add_argument("--json", action="store_true", help="JSON output")


def _waiting(p: argparse.ArgumentParser) -> None:
    p.add_argument("--timeout", type=float, default=0.0, metavar="S", help="stop waiting after S s")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")


def _add_remote_commands(sub: Any) -> None:
    """``send``, ``retry``, ``replay`` and ``tail``: clients of a running gateway's REST API."""
    p = sub.add_parser("send", help="publish an event through the REST API")
    _remote(p)
    target = p.add_mutually_exclusive_group(required=True)
    target.add_argument("--endpoint", help="deliver to this endpoint")
    target.add_argument("--owner", help="fan out to this owner's subscribed endpoints")
    target.add_argument("--broadcast", action="store_true", help="broadcast to the project")
    p.add_argument("--type", required=True, help="the event type, e.g. invoice.paid")
    p.add_argument("--data", required=True, help="the payload: JSON, @file.json or - (stdin)")
    p.add_argument("--idempotency-key", help="publish at most once per key")
    p.add_argument("--header", action="append", metavar="NAME:VALUE", help="a custom header")
    p.add_argument(
        "--wait", action="store_true", help="with --broadcast: follow it to the end, with a bar"
    )
    _waiting(p)
    p.set_defaults(fn=cmd_send)

    for kind, help_text in (
        ("retry", "retry the deliveries that match (default: failed ones), with a progress bar"),
        ("replay", "replay the events that match to their endpoints, with a progress bar"),
    ):
        p = sub.add_parser(kind, help=help_text)
        _remote(p)
        p.add_argument("--endpoint", help="only this endpoint's")
        p.add_argument("--since", help="created at or after (ISO 8601; default 7 days ago)")
        p.add_argument("--until", help="created at or before (ISO 8601; default end of today)")
        if kind == "retry":
            p.add_argument(
                "--status",
                default="Failure",
                help="delivery status (Failure; Discarded too can be requeued)",
            )
            p.add_argument("--event", help="only this event's deliveries")
            p.add_argument("--type", help="only this event type")
        p.add_argument("--no-wait", action="store_true", help="start it and return its job id")
        _waiting(p)
        p.set_defaults(fn=cmd_batch, kind=kind)

    p = sub.add_parser("tail", help="print deliveries as they happen (polls the REST API)")
    _remote(p)
    p.add_argument("--interval", type=float, default=1.0, help="seconds between polls")
    p.add_argument("--backlog", type=int, default=10, help="recent deliveries shown first")
    p.add_argument("--max", type=int, default=0, metavar="N", help="stop after N lines")
    p.add_argument("--seconds", type=float, default=0.0, metavar="S", help="stop after S s")
    p.set_defaults(fn=cmd_tail)


def _quiet_id(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument(
        "-q", "--quiet", action="store_true", help=f"print only the new {what}'s id (for $(...))"
    )


def _limit(p: argparse.ArgumentParser) -> None:
    p.add_argument("--limit", type=int, default=100, metavar="N", help="at most N (100)")


def _add_endpoint_commands(sub: Any) -> None:
    """``endpoint`` and ``subscription``: the project's receivers, over the REST API."""
    endpoint = sub.add_parser(
        "endpoint", help="manage endpoints (over the REST API)"
    ).add_subparsers(dest="action", required=True)
    p = endpoint.add_parser("create", help="create an endpoint (its signing secret is generated)")
    p.add_argument("target", metavar="URL", help="where its webhooks are sent")
    p.add_argument("--name", help="a name (default: the URL)")
    p.add_argument("--owner", help="its owner id: events sent with --owner fan out to it")
    p.add_argument("--description")
    p.add_argument("--secret", help="the signing secret (default: a generated whsec_...)")
    p.add_argument("--http-timeout", type=int, metavar="S", help="seconds per attempt (10)")
    _remote(p)
    _quiet_id(p, "endpoint")
    p.set_defaults(fn=cmd_endpoint_create)
    p = endpoint.add_parser("list", help="list the project's endpoints")
    p.add_argument("--owner", help="only this owner's")
    _limit(p)
    _remote(p)
    p.set_defaults(fn=cmd_endpoint_list)
    for action, help_text, fn in (
        ("get", "show an endpoint", cmd_endpoint_get),
        ("pause", "pause an endpoint: its events are discarded meanwhile", cmd_endpoint_pause),
        ("activate", "activate a paused or disabled endpoint", cmd_endpoint_activate),
        ("delete", "delete an endpoint", cmd_endpoint_delete),
    ):
        p = endpoint.add_parser(action, help=help_text)
        p.add_argument("endpoint_id", metavar="ENDPOINT_ID")
        _remote(p)
        p.set_defaults(fn=fn)

    subscription = sub.add_parser(
        "subscription", help="manage subscriptions (over the REST API)"
    ).add_subparsers(dest="action", required=True)
    p = subscription.add_parser(
        "create", help="subscribe an endpoint to event types (fan-out and broadcast need one)"
    )
    p.add_argument("--endpoint", required=True, help="the endpoint ID")
    p.add_argument(
        "--event-type",
        action="append",
        metavar="TYPE",
        help="an event type it gets, e.g. invoice.paid or invoice.* (repeatable; default *)",
    )
    p.add_argument("--name", help="a name (default: the event types)")
    p.add_argument("--filter-body", metavar="JSON", help="only events whose data match this")
    p.add_argument("--filter-headers", metavar="JSON", help="only events whose headers match")
    _remote(p)
    _quiet_id(p, "subscription")
    p.set_defaults(fn=cmd_subscription_create)
    p = subscription.add_parser("list", help="list the project's subscriptions")
    p.add_argument("--endpoint", help="only this endpoint's")
    _limit(p)
    _remote(p)
    p.set_defaults(fn=cmd_subscription_list)
    p = subscription.add_parser("delete", help="delete a subscription")
    p.add_argument("subscription_id", metavar="SUBSCRIPTION_ID")
    _remote(p)
    p.set_defaults(fn=cmd_subscription_delete)


def _common(p: argparse.ArgumentParser, *, listen: bool = False) -> None:
    p.add_argument(
        "--database-url",
        help=f"sqlite:///path.db (default ./hookcast.db) or postgresql://… ({DATABASE_ENV})",
    )
    if listen:
        p.add_argument("--host", help="address to listen on (default 127.0.0.1)")
        p.add_argument("--port", type=int, help="port to listen on (default 5005)")
    else:
        p.add_argument(
            "--create-database",
            action="store_true",
            help="create ./hookcast.db if it does not exist (naming one with --database-url "
            "does the same)",
        )


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="hookcast", description="A webhooks gateway.")
    root.add_argument("--version", action="version", version=f"hookcast {__version__}")
    sub = root.add_subparsers(dest="command", required=True)

    p = sub.add_parser("serve", help="run the REST API and the delivery worker")
    _common(p, listen=True)
    p.add_argument("--no-worker", action="store_true", help="API only")
    p.add_argument(
        "--workers",
        type=int,
        default=None,
        metavar="N",
        help="run delivery in N worker processes beside the API; 0: all in this process "
        "(default: one worker process on a machine with two or more cores, else 0)",
    )
    p.add_argument("--text-logs", action="store_true", help="human-readable logs")
    p.set_defaults(fn=cmd_serve)

    p = sub.add_parser("worker", help="run the delivery worker only")
    _common(p)
    p.add_argument("--text-logs", action="store_true", help="human-readable logs")
    p.set_defaults(fn=cmd_worker)

    p = sub.add_parser("migrate", help="create or upgrade the schema")
    _common(p)
    p.add_argument("--json", action="store_true")
    p.set_defaults(fn=cmd_migrate)

    project = sub.add_parser("project", help="manage projects").add_subparsers(
        dest="action", required=True
    )
    p = project.add_parser("create", help="create a project and its first admin key")
    p.add_argument("name")
    p.add_argument("--config", help="project settings as JSON, e.g. '{\"strategy\": {...}}'")
    p.add_argument(
        "--broadcast", action="store_true", help="let the first key broadcast (granted explicitly)"
    )
    p.add_argument(
        "--env",
        action="store_true",
        help=f'print shell exports of {PROJECT_ENV} and HOOKCAST_API_KEY: eval "$(hookcast '
        'project create NAME --env)"',
    )
    p.add_argument("--url", help="with --env: export HOOKCAST_API_URL too (the gateway's URL)")
    p.add_argument("--json", action="store_true")
    _common(p)
    p.set_defaults(fn=cmd_project_create)
    p = project.add_parser("list", help="list projects")
    p.add_argument("--json", action="store_true")
    _common(p)
    p.set_defaults(fn=cmd_project_list)

    _add_remote_commands(sub)
    _add_endpoint_commands(sub)
    _add_outbox_commands(sub)

    apikey = sub.add_parser("apikey", help="manage API keys").add_subparsers(
        dest="action", required=True
    )
    p = apikey.add_parser("create", help="create an API key")
    p.add_argument("--project", help="the project the key belongs to")
    p.add_argument("--admin", action="store_true", help="an instance admin key (all projects)")
    p.add_argument("--role", choices=["admin", "publisher", "viewer"], default="admin")
    p.add_argument("--broadcast", action="store_true", help="grant the broadcast permission")
    p.add_argument("--name", help="a label for the key")
    p.add_argument("--expires-in-days", type=float, help="the key stops working after this")
    p.add_argument("--json", action="store_true")
    _common(p)
    p.set_defaults(fn=cmd_apikey_create)
    p = apikey.add_parser("list", help="list API keys (never their secrets)")
    p.add_argument("--project", help="only this project's keys (default: every key)")
    p.add_argument("--json", action="store_true")
    _common(p)
    p.set_defaults(fn=cmd_apikey_list)
    p = apikey.add_parser("revoke", help="revoke an API key: it stops working within 1 s")
    p.add_argument("key_id", metavar="KEY_ID")
    p.add_argument("--json", action="store_true")
    _common(p)
    p.set_defaults(fn=cmd_apikey_revoke)
    return root


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser().parse_args(argv)
    args.argv = argv
    try:
        return int(args.fn(args))
    except apiclient.ApiClientError as exc:
        sys.stderr.write(f"hookcast: {exc.message}\n")
        hint = _api_hint(args, exc)
        if hint:
            sys.stderr.write(f"hookcast: {hint}\n")
        return 2
    except HookcastError as exc:
        sys.stderr.write(f"hookcast: {exc.message}\n")
        return 2
    except orjson.JSONDecodeError as exc:
        sys.stderr.write(f"hookcast: --config is not valid JSON: {exc}\n")
        return 2
    except KeyboardInterrupt:  # pragma: no cover
        return 130
