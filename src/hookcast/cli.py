"""The ``hookcast`` command. Thin: parse, build settings once, call bootstrap or admin."""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import os
import sys
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

import orjson

from hookcast import __version__, apiclient, bootstrap, logs, progress
from hookcast.api import admin
from hookcast.domain.errors import HookcastError
from hookcast.domain.models import KeyRole
from hookcast.settings import Settings

T = TypeVar("T")


def _run(coro: Coroutine[Any, Any, T]) -> T:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency off Windows
        return asyncio.run(coro)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(coro)


def _settings(args: argparse.Namespace) -> Settings:
    overrides: dict[str, Any] = {}
    for name in ("database_url", "host", "port"):
        value = getattr(args, name, None)
        if value is not None:
            overrides[name] = value
    return Settings(**overrides)


def _print(args: argparse.Namespace, doc: dict[str, Any], text: str) -> None:
    if getattr(args, "json", False):
        sys.stdout.write(orjson.dumps(doc).decode() + "\n")
    else:
        sys.stdout.write(text + "\n")


async def _with_store(settings: Settings, fn: Callable[[Any], Awaitable[T]]) -> T:
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
    _run(bootstrap.serve(settings, api=True, worker=not args.no_worker, worker_processes=workers))
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    parent = os.environ.get(bootstrap.PARENT_ENV)
    if parent:
        bootstrap.follow_parent(int(parent))
    settings = _settings(args)
    logs.configure(settings.log_level, "text" if args.text_logs else settings.log_format)
    if not parent:  # a worker process of a serve: that serve has just migrated
        bootstrap.run_migrations(settings)
    _run(bootstrap.serve(settings, api=False, worker=True))
    return 0


def cmd_migrate(args: argparse.Namespace) -> int:
    settings = _settings(args)
    revision = bootstrap.run_migrations(settings, newer_ok=False)
    _print(args, {"revision": revision}, f"schema is at revision {revision}")
    return 0


def cmd_project_create(args: argparse.Namespace) -> int:
    settings = _settings(args)
    config = orjson.loads(args.config) if args.config else None

    async def go(store: Any) -> tuple[Any, Any, str]:
        return await admin.create_project(store, args.name, config=config)

    project, _, token = _run(_with_store(settings, go))
    _print(
        args,
        {"project_id": project.id, "api_key": token},
        f"project {project.id} created\napi key (shown once): {token}",
    )
    return 0


def cmd_project_list(args: argparse.Namespace) -> int:
    settings = _settings(args)
    projects = _run(_with_store(settings, lambda s: s.list_projects()))
    rows = [{"project_id": p.id, "name": p.name} for p in projects]
    if args.json:
        sys.stdout.write(orjson.dumps(rows).decode() + "\n")
    else:
        for row in rows:
            sys.stdout.write(f"{row['project_id']}  {row['name']}\n")
    return 0


def cmd_apikey_create(args: argparse.Namespace) -> int:
    settings = _settings(args)
    if args.admin == bool(args.project):
        raise HookcastError("give either --project ID or --admin")
    role = KeyRole.INSTANCE_ADMIN if args.admin else KeyRole(args.role)
    expires = None
    if args.expires_in_days:
        import time

        expires = time.time_ns() // 1000 + int(args.expires_in_days * 86_400 * 1_000_000)

    async def go(store: Any) -> tuple[Any, str]:
        return await admin.create_api_key(
            store,
            project_id=args.project,
            role=role,
            can_broadcast=args.broadcast,
            name=args.name or "",
            expires_at_us=expires,
        )

    key, token = _run(_with_store(settings, go))
    _print(
        args,
        {
            "key_id": key.id,
            "api_key": token,
            "project_id": key.project_id,
            "role": role.value,
            "broadcast": key.can_broadcast,
        },
        f"api key {key.id} ({role.value}) created\napi key (shown once): {token}",
    )
    return 0


def _key_row(key: Any, now_us: int) -> dict[str, Any]:
    from hookcast.api.routes.keys import key_json

    return {"key_id": key.id, **key_json(key, now_us)}


def cmd_apikey_list(args: argparse.Namespace) -> int:
    """Keys of a project (every key without --project); never their secrets."""
    import time

    settings = _settings(args)
    keys = _run(_with_store(settings, lambda s: admin.list_api_keys(s, args.project)))
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

    settings = _settings(args)
    key = _run(_with_store(settings, lambda s: admin.revoke_api_key(s, args.key_id)))
    row = _key_row(key, time.time_ns() // 1000)
    _print(args, row, f"api key {key.id} revoked (API processes drop it within 1 s)")
    return 0


def _client(args: argparse.Namespace) -> apiclient.ApiClient:
    """For ``send`` and ``tail``: --url/--key, else HOOKCAST_API_URL/HOOKCAST_API_KEY, else
    this machine's gateway (HOOKCAST_HOST/PORT) and HOOKCAST_ADMIN_API_KEY."""
    settings = Settings()
    url = args.url or settings.api_url or f"http://{_reachable(settings.host)}:{settings.port}"
    key = args.key or settings.api_key or settings.admin_api_key
    return apiclient.ApiClient(url, key)


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
    publish = apiclient.Publish(
        project_id=args.project,
        event_type=args.type,
        data=_json_arg(args.data, "--data"),
        endpoint_id=args.endpoint or "",
        owner_id=args.owner or "",
        broadcast=args.broadcast,
        idempotency_key=args.idempotency_key or "",
        headers=_headers(args.header),
    )

    async def go() -> dict[str, Any]:
        async with _client(args) as client:
            return await apiclient.send(client, publish)

    event = _run(go())
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
        text = f"event {event.get('uid')} ({event.get('kind')}) queued: "
        text += f"{event.get('deliveries', 0)} deliveries"
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


def cmd_batch(args: argparse.Namespace) -> int:
    """``hookcast retry`` and ``hookcast replay``: start a batch job, wait with a bar."""
    bar = progress.Progress(args.kind, enabled=not args.quiet)

    async def go() -> dict[str, Any]:
        async with _client(args) as client:
            job_id = await apiclient.start_batch(
                client, args.project, args.kind, _batch_query(args)
            )
            if args.no_wait:
                return {"uid": job_id, "status": "queued"}
            return await apiclient.wait_batch(
                client, args.project, job_id, bar.update, timeout_s=args.timeout
            )

    job = _run(go())
    if args.no_wait:
        _print(args, job, f"batch {args.kind} {job['uid']} started; it runs in the background")
        return 0
    bar.finish()
    verb = "requeued" if args.kind == "retry" else "replayed"
    text = (
        f"batch {args.kind} {job.get('uid')} done: {job.get('processed', 0):,} matched, "
        f"{job.get('requeued', 0):,} {verb}"
    )
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

    async def go() -> int:
        async with _client(args) as client:
            return await apiclient.tail(client, args.project, options, out, on_error=warn)

    _run(go())
    return 0


def _remote(p: argparse.ArgumentParser) -> None:
    p.add_argument("--project", required=True, help="the project ID")
    p.add_argument("--url", help="the gateway (default HOOKCAST_API_URL or http://HOST:PORT)")
    p.add_argument("--key", help="an API key (default HOOKCAST_API_KEY or the admin key)")
    p.add_argument("--json", action="store_true", help="JSON output")


def _waiting(p: argparse.ArgumentParser) -> None:
    p.add_argument("--timeout", type=float, default=0.0, metavar="S", help="stop waiting after S s")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")


def _add_remote_commands(sub: Any) -> None:
    """``send`` and ``tail``: clients of a running gateway's REST API."""
    p = sub.add_parser("send", help="publish an event through the REST API")
    _remote(p)
    target = p.add_mutually_exclusive_group(required=True)
    target.add_argument("--endpoint", help="deliver to this endpoint")
    target.add_argument("--owner", help="fan out to this owner's endpoints")
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
            p.add_argument("--status", default="Failure", help="delivery status (Failure)")
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


def _common(p: argparse.ArgumentParser, *, listen: bool = False) -> None:
    p.add_argument(
        "--database-url", help="sqlite:///path.db (default ./hookcast.db) or postgresql://…"
    )
    if listen:
        p.add_argument("--host", help="address to listen on (default 127.0.0.1)")
        p.add_argument("--port", type=int, help="port to listen on (default 5005)")


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
    p.add_argument("--json", action="store_true")
    _common(p)
    p.set_defaults(fn=cmd_project_create)
    p = project.add_parser("list", help="list projects")
    p.add_argument("--json", action="store_true")
    _common(p)
    p.set_defaults(fn=cmd_project_list)

    _add_remote_commands(sub)

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
    args = parser().parse_args(argv)
    try:
        return int(args.fn(args))
    except HookcastError as exc:
        sys.stderr.write(f"hookcast: {exc.message}\n")
        return 2
    except orjson.JSONDecodeError as exc:
        sys.stderr.write(f"hookcast: --config is not valid JSON: {exc}\n")
        return 2
    except KeyboardInterrupt:  # pragma: no cover
        return 130
