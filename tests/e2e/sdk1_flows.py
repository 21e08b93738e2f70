"""Drive hookcast with convoy-python 1.0.0a1 (the generated openapi-python-client).

1.0.0a1 installs a package called ``convoy``, like 0.2.0, so it cannot be imported in the
test process. tests/e2e/test_sdk_v1.py runs this file in a subprocess with
``PYTHONPATH=<repo>/.venv/sdk1``:

    python sdk1_flows.py --base URL --key KEY --project PID [--receiver URL] FLOW

It prints one JSON report on stdout:

    {"flow": ..., "sdk_file": <where convoy was imported from>,
     "calls": [{"op", "method", "url", "status", "parsed"}],
     "failures": [{"check", "detail"}],        # a call or a check that went wrong
     "type_mismatches": [{"path", "detail"}]}  # a value whose JSON type differs from the spec

A "failure" is anything that breaks a 1.x user: an undocumented status code (``parsed`` is
None), an exception while parsing, a nested object the client could not parse (it silently
keeps the raw dict), a null list, an invalid enum, or a wrong value. A "type mismatch" is
a value the client accepts without complaint but whose type is not the one the spec gives
(e.g. ``null`` for an ``int``), which typed callers trip over later.
"""

from __future__ import annotations

import argparse
import enum
import json
import sys
import time
import traceback
import uuid
from collections.abc import Callable
from typing import Any

import attrs
import convoy
import httpx
from convoy import AuthenticatedClient
from convoy.api.delivery_attempts import get_delivery_attempt, get_delivery_attempts
from convoy.api.endpoints import (
    activate_endpoint,
    create_endpoint,
    delete_endpoint,
    expire_secret,
    get_endpoint,
    get_endpoints,
    pause_endpoint,
    update_endpoint,
)
from convoy.api.event_deliveries import (
    batch_retry_event_delivery,
    force_resend_event_deliveries,
    get_event_deliveries_paged,
    get_event_delivery,
    resend_event_delivery,
)
from convoy.api.events import (
    batch_replay_events,
    create_dynamic_event,
    create_endpoint_event,
    create_endpoint_fanout_event,
    get_endpoint_event,
    get_events_paged,
    replay_endpoint_event,
)
from convoy.api.subscriptions import (
    create_subscription,
    delete_subscription,
    get_subscription,
    get_subscriptions,
    toggle_subscription_status,
    update_subscription,
)
from convoy.models.datastore_delivery_mode import DatastoreDeliveryMode
from convoy.models.datastore_endpoint_status import DatastoreEndpointStatus
from convoy.models.datastore_event_delivery_status import DatastoreEventDeliveryStatus
from convoy.models.datastore_event_status import DatastoreEventStatus
from convoy.models.datastore_retry_configuration import DatastoreRetryConfiguration
from convoy.models.datastore_strategy_provider import DatastoreStrategyProvider
from convoy.models.datastore_subscription_type import DatastoreSubscriptionType
from convoy.models.models_alert_configuration import ModelsAlertConfiguration
from convoy.models.models_create_endpoint import ModelsCreateEndpoint
from convoy.models.models_create_event import ModelsCreateEvent
from convoy.models.models_create_event_data_type_0 import ModelsCreateEventDataType0
from convoy.models.models_create_subscription import ModelsCreateSubscription
from convoy.models.models_dynamic_event import ModelsDynamicEvent
from convoy.models.models_dynamic_event_data_type_0 import ModelsDynamicEventDataType0
from convoy.models.models_expire_secret import ModelsExpireSecret
from convoy.models.models_fanout_event import ModelsFanoutEvent
from convoy.models.models_fanout_event_data_type_0 import ModelsFanoutEventDataType0
from convoy.models.models_filter_configuration import ModelsFilterConfiguration
from convoy.models.models_i_ds import ModelsIDs
from convoy.models.models_rate_limit_configuration import ModelsRateLimitConfiguration
from convoy.models.models_retry_configuration import ModelsRetryConfiguration
from convoy.models.models_update_endpoint import ModelsUpdateEndpoint
from convoy.models.models_update_subscription import ModelsUpdateSubscription
from convoy.types import Unset

WAIT_S = 15.0
_PRIMITIVES: dict[str, tuple[type, ...]] = {
    "str": (str,),
    "int": (int,),
    "float": (int, float),
    "bool": (bool,),
}


def _split_union(annotation: str) -> list[str]:
    """``"list[A | None] | B | Unset"`` → ``["list[A | None]", "B", "Unset"]``."""
    parts, depth, current = [], 0, ""
    for ch in annotation:
        depth += ch == "["
        depth -= ch == "]"
        if ch == "|" and depth == 0:
            parts.append(current.strip())
            current = ""
        else:
            current += ch
    parts.append(current.strip())
    return parts


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    return type(value).__name__


class Runner:
    def __init__(self, args: argparse.Namespace) -> None:
        self.flow = args.flow
        self.pid = args.project
        self.receiver = args.receiver
        self.calls: list[dict[str, Any]] = []
        self.failures: list[dict[str, Any]] = []
        self.type_mismatches: list[dict[str, Any]] = []
        self._last: dict[str, Any] = {}
        self.client = self._client(args.base, args.key)

    def _client(self, base: str, key: str) -> AuthenticatedClient:
        def on_response(response: httpx.Response) -> None:
            response.read()
            self._last = {
                "method": response.request.method,
                "url": str(response.request.url),
                "request_body": (response.request.content or b"")[:400].decode(errors="replace"),
                "status": response.status_code,
                "body": response.content[:600].decode(errors="replace"),
            }

        return AuthenticatedClient(
            base_url=base.rstrip("/") + "/api",
            token=key,
            timeout=httpx.Timeout(10.0),
            httpx_args={"event_hooks": {"response": [on_response]}},
        )

    # ---- recording ---------------------------------------------------------------------

    def fail(self, check: str, detail: Any = None) -> None:
        entry = {"check": check, "detail": detail}
        if entry not in self.failures:
            self.failures.append(entry)

    def check(self, ok: bool, check: str, detail: Any = None) -> bool:
        if not ok:
            self.fail(check, detail)
        return ok

    def mismatch(self, path: str, detail: str) -> None:
        entry = {"path": path, "detail": detail}
        if entry not in self.type_mismatches:
            self.type_mismatches.append(entry)

    # ---- calling -----------------------------------------------------------------------

    def call(self, label: str, op: Any, expected: int, *args: Any, **kwargs: Any) -> Any:
        """Run ``op.sync_detailed`` and check the response parsed as the documented
        ``expected`` status. Returns ``parsed`` (or None when the call went wrong)."""
        self._last = {}
        try:
            resp = op.sync_detailed(self.pid, *args, client=self.client, **kwargs)
        except Exception as exc:
            self.fail(
                f"{label}: the SDK raised {type(exc).__name__}",
                {
                    "error": str(exc)[:300],
                    "where": traceback.format_exc().strip().splitlines()[-3:],
                    "http": self._last,
                },
            )
            return None
        parsed = resp.parsed
        self._log(
            {
                **{k: self._last.get(k) for k in ("method", "url", "status")},
                "op": label,
                "parsed": type(parsed).__name__,
            }
        )
        want = f"Response{expected}"
        if int(resp.status_code) != expected or parsed is None:
            self.fail(
                f"{label}: expected HTTP {expected} parsed as *{want}, got HTTP "
                f"{int(resp.status_code)} parsed as {type(parsed).__name__}",
                self._last,
            )
            return None
        self.walk(parsed, type(parsed).__name__, label)
        if expected < 300:
            self.check(parsed.status is True, f"{label}: envelope status is not true", self._last)
        else:
            self.check(
                parsed.status is False and isinstance(parsed.data, Unset),
                f"{label}: an error envelope is {{status: false, message}} with no data key",
                self._last,
            )
        return parsed

    def _log(self, call: dict[str, Any]) -> None:
        """Record a call; a repeat of the previous one (polling) only bumps its count."""
        if self.calls and {**self.calls[-1], "times": 1} == {**call, "times": 1}:
            self.calls[-1]["times"] += 1
        else:
            self.calls.append({**call, "times": 1})

    def data(self, label: str, op: Any, expected: int, *args: Any, **kwargs: Any) -> Any:
        parsed = self.call(label, op, expected, *args, **kwargs)
        if parsed is None:
            return None
        if isinstance(parsed.data, Unset):
            self.fail(f"{label}: the response has no data", self._last)
            return None
        return parsed.data

    def wait(self, predicate: Callable[[], bool], what: str, timeout: float = WAIT_S) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return True
            time.sleep(0.1)
        ok = predicate()
        return self.check(ok, f"timed out after {timeout}s waiting for {what}")

    # ---- deep type check of what the client parsed ---------------------------------------

    def walk(self, value: Any, annotation: str, path: str) -> None:
        tokens = _split_union(annotation)
        if isinstance(value, Unset):
            return
        if value is None:
            self._walk_null(tokens, annotation, path)
        elif isinstance(value, list):
            self._walk_list(value, tokens, annotation, path)
        elif attrs.has(type(value)):
            self._walk_model(value, tokens, annotation, path)
        elif isinstance(value, enum.Enum):
            if type(value).__name__ not in tokens:
                self.fail(f"{path}: enum {type(value).__name__} where {annotation} is expected")
        elif isinstance(value, dict):
            models = [t for t in tokens if t[:1].isupper() and t not in ("None", "Unset", "Any")]
            if models and not any(t.startswith("dict[") or t == "Any" for t in tokens):
                self.fail(
                    f"{path}: did not parse as {models[0]}; the client silently kept "
                    f"the raw JSON object",
                    {"value": value},
                )
        else:
            self._walk_primitive(value, tokens, annotation, path)

    def _walk_null(self, tokens: list[str], annotation: str, path: str) -> None:
        if "None" in tokens or "Any" in tokens:
            return
        if any(t.startswith("list[") for t in tokens):
            self.fail(
                f"{path}: null where the spec has a list ({annotation}); lists must be [] or absent"
            )
        else:
            self.mismatch(path, f"null where the spec says {annotation}")

    def _walk_list(self, value: list[Any], tokens: list[str], annotation: str, path: str) -> None:
        lists = [t for t in tokens if t.startswith("list[")]
        if not lists:
            self.mismatch(path, f"a JSON array where the spec says {annotation}")
            return
        for i, item in enumerate(value):
            self.walk(item, lists[0][5:-1], f"{path}[{i}]")

    def _walk_model(self, value: Any, tokens: list[str], annotation: str, path: str) -> None:
        if type(value).__name__ not in tokens:
            self.mismatch(path, f"{type(value).__name__} where the spec says {annotation}")
        for f in attrs.fields(type(value)):
            if f.name != "additional_properties":
                self.walk(getattr(value, f.name), str(f.type), f"{path}.{f.name}")

    def _walk_primitive(self, value: Any, tokens: list[str], annotation: str, path: str) -> None:
        if "Any" in tokens:
            return
        if any(
            isinstance(value, _PRIMITIVES[t]) and not (t != "bool" and isinstance(value, bool))
            for t in tokens
            if t in _PRIMITIVES
        ):
            return
        enums = [t for t in tokens if t[:1].isupper() and t not in ("None", "Unset")]
        if enums and isinstance(value, str):
            self.fail(f"{path}: {value!r} was not parsed as {enums[0]}")
        else:
            self.mismatch(path, f"{_kind(value)} {value!r} where the spec says {annotation}")

    # ---- shared steps --------------------------------------------------------------------

    def new_endpoint(self, path: str, **fields: Any) -> Any:
        body = ModelsCreateEndpoint(
            name=fields.pop("name", f"sdk1-{path.strip('/').replace('/', '-')}"),
            url=f"{self.receiver}{path}",
            **fields,
        )
        return self.data("create_endpoint", create_endpoint, 201, body=body)

    def publish(self, endpoint_id: str, event_type: str, data: dict[str, Any]) -> bool:
        body = ModelsCreateEvent(
            endpoint_id=endpoint_id,
            event_type=event_type,
            data=ModelsCreateEventDataType0.from_dict(data),
        )
        return self.call("create_endpoint_event", create_endpoint_event, 201, body=body) is not None

    def deliveries(self, **query: Any) -> list[Any]:
        data = self.data(
            "get_event_deliveries_paged", get_event_deliveries_paged, 200, per_page=100, **query
        )
        if data is None or isinstance(data.content, Unset):
            return []
        return list(data.content)

    def events(self, **query: Any) -> list[Any]:
        data = self.data("get_events_paged", get_events_paged, 200, per_page=100, **query)
        if data is None or isinstance(data.content, Unset):
            return []
        return list(data.content)

    def wait_delivery(self, status: DatastoreEventDeliveryStatus, what: str, **query: Any) -> Any:
        found: list[Any] = []

        def reached() -> bool:
            found[:] = [d for d in self.deliveries(**query) if d.status is status]
            return bool(found)

        self.wait(reached, f"{what} to reach {status.value}")
        return found[0] if found else None

    def report(self) -> dict[str, Any]:
        return {
            "flow": self.flow,
            "sdk_file": convoy.__file__,
            "calls": self.calls,
            "failures": self.failures,
            "type_mismatches": self.type_mismatches,
        }


# ---- flows ---------------------------------------------------------------------------------


def flow_endpoints(r: Runner) -> None:
    ep = r.new_endpoint(
        "/sdk1/endpoints",
        secret="sdk1-secret",
        description="first",
        advanced_signatures=False,
        http_timeout=20,
        owner_id="owner-e",
    )
    if ep is None:
        return
    r.check(
        ep.status is DatastoreEndpointStatus.ACTIVE, "created endpoint is active", str(ep.status)
    )
    r.check(
        ep.advanced_signatures is False and ep.http_timeout == 20 and ep.owner_id == "owner-e",
        "created endpoint keeps advanced_signatures/http_timeout/owner_id",
    )
    r.check(
        not isinstance(ep.secrets, Unset) and [s.value for s in ep.secrets] == ["sdk1-secret"],
        "created endpoint has the given secret",
        str(ep.secrets),
    )

    got = r.data("get_endpoint", get_endpoint, 200, ep.uid)
    r.check(got is not None and got.uid == ep.uid and got.url == ep.url, "get_endpoint returns it")

    page = r.data("get_endpoints", get_endpoints, 200, per_page=10)
    if page is not None:
        r.check(
            not isinstance(page.content, Unset) and ep.uid in [e.uid for e in page.content],
            "get_endpoints lists it",
        )
        r.check(
            not isinstance(page.pagination, Unset)
            and page.pagination is not None
            and page.pagination.per_page == 10,
            "pagination.per_page is 10",
        )

    _paging(r, ep.uid)

    upd = ModelsUpdateEndpoint(
        name="renamed", url=f"{r.receiver}/sdk1/endpoints2", description="second"
    )
    updated = r.data("update_endpoint", update_endpoint, 202, ep.uid, body=upd)
    r.check(
        updated is not None
        and updated.name == "renamed"
        and updated.url.endswith("2")
        and updated.description == "second",
        "update_endpoint applies the changes",
    )

    paused = r.data("pause_endpoint", pause_endpoint, 202, ep.uid)
    r.check(
        paused is not None and paused.status is DatastoreEndpointStatus.PAUSED,
        "pause_endpoint pauses",
    )
    unpaused = r.data("pause_endpoint (toggle back)", pause_endpoint, 202, ep.uid)
    r.check(
        unpaused is not None and unpaused.status is DatastoreEndpointStatus.ACTIVE,
        "pause_endpoint on a paused endpoint makes it active again",
    )
    r.data("pause_endpoint", pause_endpoint, 202, ep.uid)
    active = r.data("activate_endpoint", activate_endpoint, 202, ep.uid)
    r.check(
        active is not None and active.status is DatastoreEndpointStatus.ACTIVE,
        "activate_endpoint activates",
    )

    rolled = r.data(
        "expire_secret",
        expire_secret,
        200,
        ep.uid,
        body=ModelsExpireSecret(expiration=60, secret="sdk1-secret-2"),
    )
    if rolled is not None and not isinstance(rolled.secrets, Unset):
        values = [s.value for s in rolled.secrets]
        r.check(
            values == ["sdk1-secret", "sdk1-secret-2"], "expire_secret adds the new secret", values
        )
        r.check(isinstance(rolled.secrets[0].expires_at, str), "the old secret gets expires_at")

    r.call("delete_endpoint", delete_endpoint, 200, ep.uid)
    gone = r.call("get_endpoint (deleted)", get_endpoint, 404, ep.uid)
    r.check(gone is not None and gone.status is False, "a deleted endpoint is 404")


def _paging(r: Runner, first: str) -> None:
    """Two more endpoints, then walk them two at a time, newest first (§3)."""
    later = [r.new_endpoint(f"/sdk1/paging/{i}") for i in range(2)]
    if any(e is None for e in later):
        return
    newest_first = [later[1].uid, later[0].uid, first]
    page = r.data("get_endpoints (page 1)", get_endpoints, 200, per_page=2)
    if page is None or not r.check(
        page.pagination is not None and not isinstance(page.pagination, Unset),
        "get_endpoints has pagination",
    ):
        return
    r.check(
        [e.uid for e in page.content] == newest_first[:2],
        "page 1 is the newest two",
        [e.uid for e in page.content],
    )
    r.check(
        page.pagination.has_next_page is True
        and page.pagination.next_page_cursor == newest_first[2],
        "page 1 has a next page whose cursor is its first item",
        page.pagination.to_dict(),
    )
    page2 = r.data(
        "get_endpoints (page 2)",
        get_endpoints,
        200,
        per_page=2,
        next_page_cursor=page.pagination.next_page_cursor,
    )
    if page2 is not None and not isinstance(page2.content, Unset):
        r.check(
            [e.uid for e in page2.content] == newest_first[2:],
            "page 2 is the oldest",
            [e.uid for e in page2.content],
        )
        r.check(
            page2.pagination.has_next_page is False and page2.pagination.has_prev_page is True,
            "page 2 is the last page",
            page2.pagination.to_dict(),
        )
    for e in later:
        r.call("delete_endpoint", delete_endpoint, 200, e.uid)


def flow_subscriptions(r: Runner) -> None:
    ep = r.new_endpoint("/sdk1/subscriptions")
    if ep is None:
        return
    body = ModelsCreateSubscription(
        name="sdk1-sub",
        endpoint_id=ep.uid,
        filter_config=ModelsFilterConfiguration(event_types=["order.created", "order.paid"]),
        alert_config=ModelsAlertConfiguration(count=5, threshold="1h"),
        rate_limit_config=ModelsRateLimitConfiguration(count=100, duration=60),
        delivery_mode=DatastoreDeliveryMode.AT_LEAST_ONCE,
    )
    sub = r.data("create_subscription", create_subscription, 201, body=body)
    if sub is None:
        return
    r.check(sub.type_ is DatastoreSubscriptionType.API, "subscription type is api", str(sub.type_))
    r.check(sub.delivery_mode is DatastoreDeliveryMode.AT_LEAST_ONCE, "delivery_mode kept")
    r.check(
        getattr(sub.filter_config, "event_types", None) == ["order.created", "order.paid"],
        "filter_config.event_types kept",
        str(sub.filter_config),
    )
    r.check(
        getattr(sub.endpoint_metadata, "uid", None) == ep.uid,
        "endpoint_metadata is the endpoint",
        str(sub.endpoint_metadata),
    )

    got = r.data("get_subscription", get_subscription, 200, sub.uid)
    r.check(got is not None and got.uid == sub.uid, "get_subscription returns it")
    page = r.data("get_subscriptions", get_subscriptions, 200, endpoint_id=[ep.uid], per_page=10)
    r.check(
        page is not None
        and not isinstance(page.content, Unset)
        and [s.uid for s in page.content] == [sub.uid],
        "get_subscriptions filters by endpoint",
    )

    upd = ModelsUpdateSubscription(
        name="sdk1-sub-2",
        filter_config=ModelsFilterConfiguration(event_types=["*"]),
        retry_config=ModelsRetryConfiguration(
            type_=DatastoreStrategyProvider.LINEAR, duration="3s", retry_count=2
        ),
    )
    updated = r.data("update_subscription", update_subscription, 202, sub.uid, body=upd)
    if updated is not None:
        r.check(updated.name == "sdk1-sub-2", "update_subscription renames")
        r.check(
            getattr(updated.filter_config, "event_types", None) == ["*"],
            "update_subscription changes the event types",
        )
        rc = updated.retry_config
        r.check(
            isinstance(rc, DatastoreRetryConfiguration)
            and rc.type_ is DatastoreStrategyProvider.LINEAR
            and rc.retry_count == 2
            and rc.duration == 3,
            "retry_config comes back as the spec's DatastoreRetryConfiguration "
            "{type: linear, duration: 3 (int seconds), retry_count: 2}",
            rc.to_dict() if attrs.has(type(rc)) else rc,
        )

    r.call("delete_subscription", delete_subscription, 200, sub.uid)
    r.call("get_subscription (deleted)", get_subscription, 404, sub.uid)


def flow_events(r: Runner) -> None:
    ep = r.new_endpoint("/sdk1/events")
    if ep is None or not r.publish(ep.uid, "order.created", {"order": 42}):
        return
    events: list[Any] = []

    def listed() -> bool:
        events[:] = r.events(endpoint_id=[ep.uid])
        return bool(events)

    if not r.wait(listed, "the event to be listed"):
        return
    ev = events[0]
    r.check(
        ev.event_type == "order.created" and isinstance(ev.status, DatastoreEventStatus),
        "listed event has its type and a valid status",
    )
    got = r.data("get_endpoint_event", get_endpoint_event, 200, ev.uid)
    if got is not None:
        data = got.data.to_dict() if attrs.has(type(got.data)) else got.data
        r.check(data == {"order": 42}, "get_endpoint_event returns the data as sent", data)
        r.check(
            not isinstance(got.endpoints, Unset) and ep.uid in got.endpoints,
            "event.endpoints lists the endpoint",
            str(got.endpoints),
        )

    done = r.wait_delivery(DatastoreEventDeliveryStatus.SUCCESS, "the delivery", event_id=ev.uid)
    if done is None:
        return
    r.check(done.endpoint_id == ep.uid and done.event_id == ev.uid, "delivery ids")
    by_status = r.deliveries(status=["Success"], event_type="order.created", endpoint_id=[ep.uid])
    r.check([d.uid for d in by_status] == [done.uid], "deliveries filter by status/type/endpoint")
    one = r.data("get_event_delivery", get_event_delivery, 200, done.uid)
    r.check(
        one is not None
        and one.uid == done.uid
        and one.status is DatastoreEventDeliveryStatus.SUCCESS,
        "get_event_delivery",
    )

    attempts = r.data("get_delivery_attempts", get_delivery_attempts, 200, done.uid)
    if not r.check(
        isinstance(attempts, list) and len(attempts) == 1,
        "get_delivery_attempts lists one attempt",
        str(attempts),
    ):
        return
    att = r.data("get_delivery_attempt", get_delivery_attempt, 200, done.uid, attempts[0].uid)
    if att is not None:
        r.check(att.msg_id == done.uid, "attempt.msg_id is the delivery id", att.msg_id)
        r.check(
            att.http_status == "200 OK" and att.status is True,
            "attempt http_status '200 OK' and status true",
            [att.http_status, att.status],
        )
        r.check(
            att.method == "POST" and att.url == f"{r.receiver}/sdk1/events",
            "attempt method and url",
            [att.method, att.url],
        )


def flow_fanout(r: Runner) -> None:
    owner = f"owner-{uuid.uuid4().hex[:8]}"
    eps = [r.new_endpoint(f"/sdk1/fanout/{n}", owner_id=owner) for n in ("a", "b", "c")]
    if any(e is None for e in eps):
        return
    for e in eps[:2]:  # fanout does not auto-create subscriptions: c gets nothing
        r.data(
            "create_subscription",
            create_subscription,
            201,
            body=ModelsCreateSubscription(name=f"sub-{e.uid}", endpoint_id=e.uid),
        )
    body = ModelsFanoutEvent(
        owner_id=owner,
        event_type="fan.out",
        data=ModelsFanoutEventDataType0.from_dict({"fan": True}),
    )
    if r.call("create_endpoint_fanout_event", create_endpoint_fanout_event, 201, body=body) is None:
        return
    ids = [e.uid for e in eps]
    ok: list[Any] = []

    def both() -> bool:
        ok[:] = r.deliveries(endpoint_id=ids, status=["Success"])
        return len(ok) >= 2

    r.wait(both, "the fan-out deliveries to a and b")
    r.check(
        sorted(d.endpoint_id for d in ok) == sorted(ids[:2]),
        "fan-out delivered to a and b only",
        [d.endpoint_id for d in ok],
    )
    r.check(not r.deliveries(endpoint_id=[ids[2]]), "no delivery for c (no subscription)")


def flow_dynamic(r: Runner) -> None:
    body = ModelsDynamicEvent(
        url=f"{r.receiver}/sdk1/dynamic",
        event_type="dyn.event",
        secret="dyn-secret",
        data=ModelsDynamicEventDataType0.from_dict({"dynamic": 1}),
    )
    if r.call("create_dynamic_event", create_dynamic_event, 201, body=body) is None:
        return
    r.wait_delivery(
        DatastoreEventDeliveryStatus.SUCCESS, "the dynamic delivery", event_type="dyn.event"
    )
    page = r.data("get_endpoints", get_endpoints, 200, per_page=10)
    urls = [] if page is None or isinstance(page.content, Unset) else [e.url for e in page.content]
    r.check(f"{r.receiver}/sdk1/dynamic" in urls, "the dynamic endpoint was created", urls)


def flow_resend(r: Runner) -> None:
    """The project retries once (retry_count=1) and the receiver answers 500 then 200."""
    ep = r.new_endpoint("/sdk1/resend")
    if ep is None or not r.publish(ep.uid, "will.fail", {"fail": 1}):
        return
    failed = r.wait_delivery(
        DatastoreEventDeliveryStatus.FAILURE, "the delivery", endpoint_id=[ep.uid]
    )
    if failed is None:
        return
    refused = r.call(
        "force_resend_event_deliveries (a Failure)",
        force_resend_event_deliveries,
        400,
        body=ModelsIDs(ids=[failed.uid]),
    )
    r.check(
        refused is not None and refused.message == "only successful events can be force resent",
        "force resend of a failed delivery is refused",
        getattr(refused, "message", None),
    )
    resent = r.data("resend_event_delivery", resend_event_delivery, 200, failed.uid)
    r.check(
        resent is not None
        and resent.uid == failed.uid
        and isinstance(resent.status, DatastoreEventDeliveryStatus),
        "resend returns the delivery",
    )
    done = r.wait_delivery(
        DatastoreEventDeliveryStatus.SUCCESS, "the resent delivery", endpoint_id=[ep.uid]
    )
    if done is None:
        return
    attempts = r.data("get_delivery_attempts", get_delivery_attempts, 200, done.uid) or []
    r.check(
        [a.http_status for a in attempts] == ["500 Internal Server Error", "200 OK"],
        "attempts: a 500 then a 200",
        [a.http_status for a in attempts],
    )
    again = r.call("resend_event_delivery (already sent)", resend_event_delivery, 400, done.uid)
    r.check(again is not None and again.status is False, "resending a Success is 400")

    forced = r.call(
        "force_resend_event_deliveries",
        force_resend_event_deliveries,
        200,
        body=ModelsIDs(ids=[done.uid]),
    )
    r.check(
        forced is not None and forced.message == "1 successful, 0 failed",
        "force resend message",
        getattr(forced, "message", None),
    )

    def third() -> bool:
        got = r.data("get_delivery_attempts", get_delivery_attempts, 200, done.uid) or []
        return len(got) >= 3

    r.wait(third, "the forced resend to make a third attempt")


def flow_discarded(r: Runner) -> None:
    """A delivery to a paused endpoint is Discarded; it resends once the endpoint is active."""
    ep = r.new_endpoint("/sdk1/discarded")
    if ep is None:
        return
    paused = r.data("pause_endpoint", pause_endpoint, 202, ep.uid)
    if paused is None or not r.publish(ep.uid, "to.paused", {"paused": True}):
        return
    dropped = r.wait_delivery(
        DatastoreEventDeliveryStatus.DISCARDED, "the delivery", endpoint_id=[ep.uid]
    )
    if dropped is None:
        return
    r.call("resend_event_delivery (endpoint paused)", resend_event_delivery, 400, dropped.uid)
    r.data("activate_endpoint", activate_endpoint, 202, ep.uid)
    r.data("resend_event_delivery", resend_event_delivery, 200, dropped.uid)
    r.wait_delivery(
        DatastoreEventDeliveryStatus.SUCCESS, "the resent delivery", endpoint_id=[ep.uid]
    )


def flow_errors(r: Runner) -> None:
    bad = Runner(
        argparse.Namespace(
            flow=r.flow,
            project=r.pid,
            receiver=r.receiver,
            base=str(r.client._base_url)[: -len("/api")],
            key="CO.wrong.key",
        )
    )
    denied = bad.call("get_endpoints (wrong key)", get_endpoints, 401)
    r.failures += bad.failures
    r.calls += bad.calls
    r.check(denied is not None and denied.status is False, "a wrong key is 401")
    body = ModelsCreateEvent(endpoint_id="x", data=ModelsCreateEventDataType0.from_dict({}))
    err = r.call("create_endpoint_event (no event_type)", create_endpoint_event, 400, body=body)
    r.check(
        err is not None and err.message == "please provide an event type",
        "missing event_type message",
        getattr(err, "message", None),
    )
    r.call("get_endpoint_event (unknown id)", get_endpoint_event, 404, "01J00000000000000000000000")
    r.call("get_endpoint (unknown id)", get_endpoint, 404, "01J00000000000000000000000")


# ---- contract routes (§4) that 0.2.0 cannot reach ---------------------------------------


def flow_subscription_toggle(r: Runner) -> None:
    ep = r.new_endpoint("/sdk1/toggle")
    if ep is None:
        return
    sub = r.data(
        "create_subscription",
        create_subscription,
        201,
        body=ModelsCreateSubscription(name="toggle", endpoint_id=ep.uid),
    )
    if sub is not None:
        r.call("toggle_subscription_status", toggle_subscription_status, 202, sub.uid)


def flow_event_replay(r: Runner) -> None:
    ep = r.new_endpoint("/sdk1/replay")
    if ep is None or not r.publish(ep.uid, "re.play", {"n": 1}):
        return
    r.wait_delivery(DatastoreEventDeliveryStatus.SUCCESS, "the delivery", endpoint_id=[ep.uid])
    events = r.events(endpoint_id=[ep.uid])
    if not r.check(len(events) == 1, "one event listed"):
        return
    replayed = r.data("replay_endpoint_event", replay_endpoint_event, 200, events[0].uid)
    r.check(replayed is not None and replayed.uid == events[0].uid, "replay returns the event")
    replays = r.call("batch_replay_events", batch_replay_events, 200, endpoint_id=[ep.uid])
    r.check(replays is None or isinstance(replays.data, str), "batch replay data is a string")


def flow_batch_retry(r: Runner) -> None:
    ep = r.new_endpoint("/sdk1/batchretry")
    if ep is None or not r.publish(ep.uid, "batch.retry", {"n": 1}):
        return
    if (
        r.wait_delivery(DatastoreEventDeliveryStatus.FAILURE, "the delivery", endpoint_id=[ep.uid])
        is None
    ):
        return
    retried = r.call(
        "batch_retry_event_delivery",
        batch_retry_event_delivery,
        200,
        endpoint_id=[ep.uid],
        status=["Failure"],
    )
    if retried is None:
        return
    r.wait_delivery(
        DatastoreEventDeliveryStatus.SUCCESS, "the batch-retried delivery", endpoint_id=[ep.uid]
    )


FLOWS: dict[str, Callable[[Runner], None]] = {
    name[len("flow_") :]: fn for name, fn in globals().items() if name.startswith("flow_")
}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--base", required=True, help="gateway base URL, e.g. http://host:port")
    parser.add_argument("--key", required=True)
    parser.add_argument("--project", required=True)
    parser.add_argument("--receiver", default="")
    parser.add_argument("flow", choices=sorted(FLOWS))
    args = parser.parse_args()
    runner = Runner(args)
    try:
        FLOWS[args.flow](runner)
    except Exception:
        runner.fail("the flow crashed", traceback.format_exc().strip().splitlines()[-6:])
    json.dump(runner.report(), sys.stdout, indent=1, default=str)
    return 0


if __name__ == "__main__":
    sys.exit(main())
