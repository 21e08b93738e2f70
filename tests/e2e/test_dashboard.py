"""The web dashboard, end to end in a real headless browser.

Debian's chromium (``apt-get install -y chromium``; .ci/run installs it) driven by
Playwright's Python package, launched by its executable path: nothing downloads a browser.
Screenshots of every page land in test-artifacts/dashboard/.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
from playwright.sync_api import Browser, Page, expect

from support import ADMIN_KEY, Behaviour, Gateway, Project, Receiver, wait_until

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "dashboard"
#: two tries a second apart: a failing delivery ends as Failure quickly; the breaker trips
#: on the 4th failure (2 events x 2 tries) and lets a probe through a second later
CONFIG = {
    "strategy": {"type": "linear", "duration": 1, "retry_count": 2},
    "circuit_breaker": {"minimum_request_count": 4, "error_timeout_s": 1, "disable_after_trips": 0},
}
BROADCAST_TARGETS = 24
WAIT_MS = 15_000
#: a project whose failing endpoint waits ten minutes between tries: its deliveries stay in
#: Retry for the whole test, and its breaker stays closed (it judges from 100 requests on)
SLOW_RETRIES = {
    "strategy": {"type": "linear", "duration": 600, "retry_count": 5},
    "circuit_breaker": {"minimum_request_count": 100, "disable_after_trips": 0},
}
STEADY = 3  # the endpoints of that project that answer 200
#: never on a page: a count of one with a plural noun ("1 deliveries", stat "1" + "targets")
ONE_PLURAL = re.compile(
    r"(?<![\d.,])1\s+(deliveries|events|endpoints|targets|attempts|keys|retries)\b"
)
#: never on a page: a value that was meant to be left out, printed instead
STRAY = {"null", "undefined", "NaN", "[object Object]"}
#: the text nodes of <main>, outside the charts, in document order
MAIN_TEXT = """() => {
  const parts = [];
  const walk = document.createTreeWalker(document.querySelector("main"), NodeFilter.SHOW_TEXT);
  while (walk.nextNode()) {
    const node = walk.currentNode;
    const text = node.textContent.trim();
    if (text && !node.parentElement.closest("svg")) parts.push(text);
  }
  return parts;
}"""
#: the keyboard focus ring: a 2 px outline in the accent colour
FOCUS_JS = """() => {
  const el = document.activeElement, style = getComputedStyle(el);
  return [el.tagName, style.outlineStyle, style.outlineWidth, style.outlineColor];
}"""
ACCENT = "rgb(52, 87, 213)"
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@pytest.fixture
def page(browser: Browser, request: pytest.FixtureRequest) -> Iterator[Page]:
    page = browser.new_page(viewport={"width": 1280, "height": 860})
    page.set_default_timeout(WAIT_MS)
    expect.set_options(timeout=WAIT_MS)
    yield page
    shot(page, f"zz-last-{request.node.name}")  # what it showed at the end, passed or failed
    page.close()


def shot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def check_text(page: Page) -> list[str]:
    """What <main> shows holds no stray value and no "1 deliveries"; returns its text."""
    texts: list[str] = page.evaluate(MAIN_TEXT)
    assert not STRAY & set(texts), texts
    assert not ONE_PLURAL.search(" ".join(texts)), " ".join(texts)
    return texts


def check_focus_ring(page: Page, tag: str) -> None:
    assert page.evaluate(FOCUS_JS) == [tag, "solid", "2px", ACCENT]


def _micros(iso: str) -> int:
    return (datetime.fromisoformat(iso) - EPOCH) // timedelta(microseconds=1)


def server_span_ms(project: Project, event_id: str) -> tuple[float, int]:
    """By the server's times: from publishing the event to its last finished delivery (ms),
    and when it was published (us since the epoch)."""
    published = _micros(project.ok("GET", f"/events/{event_id}")["acknowledged_at"])
    ends = [
        _micros(d["updated_at"])
        for d in project.deliveries(eventId=event_id)
        if d["status"] in ("Success", "Failure", "Discarded")
    ]
    return (max(ends) - published) / 1000, published


def _seconds(tick: str) -> float:
    value, unit = tick.split()
    return float(value) / (1000 if unit == "ms" else 1)


def check_timeline(page: Page, project: Project, event_id: str) -> float:
    """The chart spans publishing to the last delivery by the server's clock (not the
    browser's polls); returns where its time axis ends (s)."""
    span_ms, _ = server_span_ms(project, event_id)
    chart = page.locator("#bc-timeline")
    expect(chart).to_have_attribute("data-span-ms", re.compile(r"^\d"))
    drawn = float(chart.get_attribute("data-span-ms") or "nan")
    assert abs(drawn - span_ms) < 0.5, (drawn, span_ms)
    axis_end = max(_seconds(t) for t in chart.locator("text.tick.x").all_text_contents())
    assert span_ms / 1000 <= axis_end < 1.5 * span_ms / 1000 + 0.002, (axis_end, span_ms)
    return axis_end


def broadcast_as_admin(gateway: Gateway, project: Project, event_type: str) -> str:
    r = gateway.admin(
        "POST",
        f"/api/v1/projects/{project.id}/events/broadcast",
        json={"event_type": event_type, "data": {"at": "now"}},
    )
    assert r.status_code == 201, r.text
    return str(r.json()["data"]["uid"])


def subscribe_all(project: Project, endpoint: dict[str, Any]) -> None:
    body = {"name": f"all-{endpoint['name']}", "endpoint_id": endpoint["uid"], "filter_config": {}}
    project.ok("POST", "/subscriptions", 201, json=body)


def _seed(project: Project, receiver: Receiver) -> dict[str, Any]:
    """Two ordinary endpoints (one failing), events to both, and broadcast targets."""
    receiver.behave("/billing", Behaviour(500, body=b'{"error":"billing is down"}'))
    orders = project.endpoint(receiver.url + "/orders", name="orders-service", owner_id="shop")
    billing = project.endpoint(receiver.url + "/billing", name="billing-service", owner_id="shop")
    for i in range(3):
        project.publish(orders["uid"], "order.created", {"order": i, "total": 10 * i})
    resend_me = project.publish(billing["uid"], "invoice.failed", {"invoice": "INV-1"})
    retry_me = project.publish(billing["uid"], "invoice.failed", {"invoice": "INV-2"})
    assert wait_until(
        lambda: (
            [d["status"] for d in project.deliveries(endpointId=billing["uid"])]
            == ["Failure", "Failure"]
        ),
        15,
    ), project.deliveries()
    # broadcast targets: each subscribed, answering after a different delay so that the
    # progress takes a few seconds and the latency percentiles differ
    for i in range(BROADCAST_TARGETS):
        path = f"/fleet/{i}"
        receiver.behave(path, Behaviour(delay_s=0.12 * i))
        ep = project.endpoint(receiver.url + path, name=f"fleet-{i:02d}", owner_id=f"tenant-{i}")
        subscribe_all(project, ep)
    key = project.ok("POST", "/api-keys", 201, json={"role": "admin", "broadcast": True})
    return {"billing": billing, "resend": resend_me, "retry": retry_me, "key": key["key"]}


def test_dashboard_is_served_by_hookcast(gateway: Gateway) -> None:
    r = requests.get(gateway.base + "/", allow_redirects=False, timeout=10)
    assert r.status_code == 302 and r.headers["Location"] == "/dashboard/"
    r = requests.get(gateway.base + "/dashboard/", timeout=10)
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("text/html")
    assert "default-src 'self'" in r.headers["Content-Security-Policy"]
    assert '<script type="module" src="app.js">' in r.text
    r = requests.get(gateway.base + "/dashboard/app.js", timeout=10)
    assert r.headers["Content-Type"].startswith("text/javascript")
    r = requests.get(gateway.base + "/dashboard/..%2Fpyproject.toml", timeout=10)
    assert r.status_code == 404 and r.json()["status"] is False


def test_dashboard_end_to_end(gateway: Gateway, receiver: Receiver, page: Page) -> None:
    project = gateway.create_project("shop", CONFIG)
    seeded = _seed(project, receiver)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))

    # / sends the browser to the dashboard, which asks for a key
    page.goto(gateway.base + "/")
    assert page.url.startswith(gateway.base + "/dashboard/")
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    page.fill("#key", "not-a-key")
    page.click("button[type=submit]")
    expect(page.get_by_role("alert")).to_contain_text("authorization failed")
    shot(page, "01-sign-in")
    page.fill("#key", seeded["key"])
    page.click("button[type=submit]")

    # projects: a project key sees its own
    expect(page.get_by_role("heading", name="Projects")).to_be_visible()
    expect(page.get_by_role("link", name="shop")).to_be_visible()
    shot(page, "02-projects")
    page.get_by_role("link", name="shop").click()

    # endpoints: health, breaker state, success rate
    expect(page.get_by_role("heading", name="Endpoints")).to_be_visible()
    billing = page.locator(f"tr[data-endpoint='{seeded['billing']['uid']}']")
    expect(billing.locator(".health")).to_have_text("down")
    expect(billing.locator(".breaker")).to_contain_text("open4 of 4 failed")
    expect(billing.locator(".success")).to_contain_text("0.0 %")
    orders = page.locator("tr", has_text="orders-service")
    expect(orders.locator(".health")).to_have_text("healthy")
    expect(orders.locator(".success")).to_contain_text("100.0 %")
    expect(orders.locator(".breaker")).to_have_text("closed")
    expect(page.locator("tr[data-endpoint]")).to_have_count(2 + BROADCAST_TARGETS)
    shot(page, "03-endpoints")

    # events: all, then searched, filtered by endpoint and by date
    page.click("nav >> text=Events")
    expect(page.locator("tr[data-event]")).to_have_count(5)
    page.fill("input[name=query]", "invoice.failed")
    page.click("form.filters button[type=submit]")
    expect(page.locator("tr[data-event]")).to_have_count(2)
    assert "query=invoice.failed" in page.url
    shot(page, "04-events-search")
    page.click("form.filters >> text=Clear")
    expect(page.locator("tr[data-event]")).to_have_count(5)  # the new page, not the old one
    page.select_option("select[name=endpointId]", label="orders-service")
    page.click("form.filters button[type=submit]")
    expect(page.locator("tr[data-event]")).to_have_count(3)
    expect(page.locator("tr[data-event]").first).to_contain_text("order.created")
    page.fill("input[name=startDate]", "2020-01-01T00:00:00")
    page.fill("input[name=endDate]", "2020-01-02T00:00:00")
    page.click("form.filters button[type=submit]")
    expect(page.get_by_text("No events match.")).to_be_visible()
    assert "startDate=2020-01-01T00%3A00%3A00" in page.url
    page.fill("input[name=endDate]", "2019-01-01T00:00:00")
    page.click("form.filters button[type=submit]")
    expect(page.get_by_role("alert")).to_contain_text("endDate is before startDate")
    check_text(page)  # no pager under the refusal, and no "null" in its place

    # an event's deliveries, a delivery's attempts, resend
    page.click("form.filters >> text=Clear")
    expect(page.locator("tr[data-event]")).to_have_count(5)  # the new page, not the old one
    page.click(f"tr[data-event='{seeded['resend']['uid']}'] >> text=invoice.failed")
    expect(page.get_by_role("heading", name="Payload")).to_be_visible()
    expect(page.locator("pre.code")).to_contain_text("INV-1")
    row = page.locator("tr[data-delivery]")
    expect(row).to_have_count(1)
    expect(row.locator(".status")).to_have_text("Failure")
    expect(row.locator("button.resend")).to_be_visible()
    shot(page, "05-event-deliveries")
    row.locator("a").first.click()
    expect(page.get_by_role("heading", name=re.compile("^Delivery"))).to_be_visible()
    attempts = page.locator("tr[data-attempt]")
    expect(attempts).to_have_count(2)
    assert "null" not in check_text(page)  # no attempt open: nothing under the table
    shot(page, "06a-delivery-attempts")
    attempts.first.click()
    detail = page.locator("#attempt-detail")
    expect(detail).to_contain_text("500 Internal Server Error")
    expect(detail.locator(".response-body")).to_contain_text("billing is down")
    expect(detail).to_contain_text("webhook-signature")  # the request headers that were sent
    shot(page, "06-delivery-attempt")
    receiver.behave("/billing", Behaviour(200, body=b'{"ok":true}'))
    page.click("button.resend")
    expect(page.locator(".actions .status")).to_have_text("Success")
    expect(attempts).to_have_count(3)
    attempts.last.click()
    expect(detail).to_contain_text("200 OK")
    shot(page, "07-resent")

    # the other failed event: the batch retry button
    page.goto(f"{gateway.base}/dashboard/#/p/{project.id}/events/{seeded['retry']['uid']}")
    expect(page.locator("tr[data-delivery] .status")).to_have_text("Failure")
    page.click("button.retry")
    expect(page.locator(".job")).to_contain_text("Batch retry done")
    expect(page.locator("tr[data-delivery] .status")).to_have_text("Success")
    shot(page, "08-batch-retried")

    # a broadcast sent from the dashboard, watched live to the end; the form says what
    # broadcasting needs, and the keyboard focus shows on it
    page.click("nav >> text=Broadcasts")
    explained = page.locator("#broadcast-help")
    expect(explained).to_contain_text("broadcast permission")
    expect(explained).to_contain_text(f"hookcast apikey create --project {project.id} --broadcast")
    expect(explained).to_contain_text("hookcast project create NAME --broadcast")
    page.focus("input[name=event_type]")
    check_focus_ring(page, "INPUT")
    page.fill("input[name=event_type]", "fleet.update")
    page.fill("textarea[name=data]", '{"version": "2.4.1"}')
    page.keyboard.press("Tab")
    check_focus_ring(page, "BUTTON")
    shot(page, "09-broadcast-form")
    page.click("form.broadcast-form button[type=submit]")
    page.wait_for_url(re.compile(r"/broadcasts/[0-9A-Z]{26}$"))
    expect(page.get_by_role("heading", name=re.compile("^Broadcast"))).to_be_visible()
    broadcast_id = page.url.rsplit("/", 1)[1]
    expect(page.locator("#bc-pct")).not_to_have_text("0 %")
    shot(page, "10-broadcast-live")
    expect(page.locator("#bc-pct")).to_have_text("100 %", timeout=30_000)
    succeeded = page.locator(".stat.good .stat-value")
    expect(succeeded).to_have_text(str(2 + BROADCAST_TARGETS))  # orders and billing too
    expect(page.locator("svg.chart path.series.ok")).to_have_count(1)
    expect(page.locator("svg.bars")).to_contain_text("ms")
    expect(page.locator("#bc-state")).to_contain_text("Success")
    check_timeline(page, project, broadcast_id)
    shot(page, "11-broadcast-done")

    # opened again well after the end, the chart still spans the deliveries alone
    span_ms, published_us = server_span_ms(project, broadcast_id)
    later = published_us / 1e6 + 2 * span_ms / 1000 + 3
    time.sleep(min(max(later - time.time(), 0), 10))
    page.reload()
    expect(page.locator("#bc-pct")).to_have_text("100 %")
    assert check_timeline(page, project, broadcast_id) < time.time() - published_us / 1e6
    check_text(page)
    shot(page, "11a-broadcast-reopened")

    # signing out forgets the key; the instance admin key lists every project
    page.click("#signout")
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    assert page.evaluate("sessionStorage.length") == 0
    gateway.create_project("warehouse")
    page.fill("#key", ADMIN_KEY)
    page.click("button[type=submit]")
    expect(page.locator("main tbody tr")).to_have_count(2)
    expect(page.get_by_role("link", name="warehouse")).to_be_visible()

    assert errors == [], errors
    invoices = [r for r in receiver.at("/billing") if b"INV-" in r.body]
    assert len(invoices) == 6  # 2 x 2 failed tries, 1 resend, 1 batch retry


def _seed_retrying(gateway: Gateway, receiver: Receiver) -> dict[str, Any]:
    """A failing endpoint with 4 deliveries in Retry (3 events and a broadcast; the next try
    is minutes away, the breaker closed) and that broadcast at 75 %: 3 of 4 delivered."""
    project = gateway.create_project("retries", SLOW_RETRIES)
    receiver.behave("/flaky", Behaviour(500, body=b'{"error":"try later"}'))
    flaky = project.endpoint(receiver.url + "/flaky", name="flaky-service")
    for i in range(3):
        project.publish(flaky["uid"], "job.run", {"job": i})  # subscribes it to everything
    for i in range(STEADY):
        subscribe_all(project, project.endpoint(f"{receiver.url}/steady/{i}", name=f"steady-{i}"))
    broadcast = broadcast_as_admin(gateway, project, "fleet.restart")

    def settled() -> bool:
        at_flaky = [d["status"] for d in project.deliveries(endpointId=flaky["uid"])]
        of_broadcast = sorted(d["status"] for d in project.deliveries(eventId=broadcast))
        return at_flaky == ["Retry"] * 4 and of_broadcast == ["Retry"] + ["Success"] * STEADY

    assert wait_until(settled, 15), project.deliveries()
    return {"project": project, "flaky": flaky["uid"], "broadcast": broadcast}


def _seed_single(gateway: Gateway, receiver: Receiver) -> dict[str, Any]:
    """A project of one endpoint, and a broadcast that reached it: counts of one."""
    project = gateway.create_project("solo")
    subscribe_all(project, project.endpoint(receiver.url + "/solo", name="solo-service"))
    broadcast = broadcast_as_admin(gateway, project, "solo.ping")
    assert wait_until(
        lambda: [d["status"] for d in project.deliveries(eventId=broadcast)] == ["Success"], 15
    ), project.deliveries()
    return {"project": project, "broadcast": broadcast}


def _open(page: Page, gateway: Gateway, project: Project, rest: str) -> None:
    page.goto(f"{gateway.base}/dashboard/#/p/{project.id}/{rest}")


def test_dashboard_statuses_agree_with_deliveries(
    gateway: Gateway, receiver: Receiver, page: Page
) -> None:
    """Retries and partial broadcasts are never shown as idle or green; counts of one are
    singular."""
    retrying = _seed_retrying(gateway, receiver)
    single = _seed_single(gateway, receiver)
    project = retrying["project"]
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(gateway.base + "/dashboard/#/login")
    page.fill("#key", ADMIN_KEY)
    page.click("button[type=submit]")
    expect(page.get_by_role("heading", name="Projects")).to_be_visible()

    # endpoints: the failing one is failing, from its retries (its breaker is still closed)
    _open(page, gateway, project, "endpoints")
    flaky = page.locator(f"tr[data-endpoint='{retrying['flaky']}']")
    expect(flaky.locator(".success")).to_contain_text("0 of 4 succeeded, 4 retrying")
    expect(flaky.locator(".success")).not_to_contain_text("no recent deliveries")
    expect(flaky.locator(".health")).to_have_text("failing")
    expect(flaky.locator(".breaker")).to_contain_text("closed")
    steady = page.locator("tr", has_text="steady-0")
    expect(steady.locator(".health")).to_have_text("healthy")
    expect(steady.locator(".success")).to_contain_text("1 of 1 succeeded")
    check_text(page)
    shot(page, "20-endpoint-retrying")

    # events: the broadcast at 75 % and the retrying events are in progress, not green
    _open(page, gateway, project, "events")
    expect(page.locator("tr[data-event]")).to_have_count(4)
    partial = page.locator(f"tr[data-event='{retrying['broadcast']}'] .status")
    expect(partial).to_contain_text("In progress")
    expect(partial).to_contain_text("3 of 4 succeeded, 1 retrying")
    expect(partial.locator(".badge")).not_to_have_class(re.compile(r"\bgood\b"))
    expect(page.locator("tr[data-event] .status", has_text="In progress")).to_have_count(4)
    expect(page.locator("tr[data-event] .badge.good")).to_have_count(0)
    check_text(page)
    shot(page, "21-events-in-progress")

    # the broadcast itself, and the list under the form, say the same
    _open(page, gateway, project, f"broadcasts/{retrying['broadcast']}")
    expect(page.locator("#bc-pct")).to_have_text("75 %")
    expect(page.locator("#bc-state")).to_contain_text("In progress")
    expect(page.locator("#bc-state .badge")).not_to_have_class(re.compile(r"\bgood\b"))
    check_timeline(page, project, retrying["broadcast"])
    check_text(page)
    shot(page, "22-broadcast-partial")
    _open(page, gateway, project, "broadcasts")
    listed = page.locator(f"tr[data-broadcast='{retrying['broadcast']}'] .status")
    expect(listed).to_have_text("In progress")
    shot(page, "23-broadcasts-list")

    # one target, one delivery: singular words
    solo = single["project"]
    _open(page, gateway, solo, f"broadcasts/{single['broadcast']}")
    expect(page.locator("#bc-pct")).to_have_text("100 %")
    expect(page.locator(".progress-head")).to_contain_text("1 of 1 delivery finished")
    expect(page.locator(".stats")).to_contain_text("target matched")
    expect(page.locator(".stats")).to_contain_text("delivery written")
    expect(page.locator("#bc-state")).to_contain_text("Success")
    check_text(page)
    shot(page, "24-broadcast-single")
    _open(page, gateway, solo, "endpoints")
    expect(page.locator("tr[data-endpoint] .success")).to_contain_text("1 of 1 succeeded")
    check_text(page)
    _open(page, gateway, solo, "events")
    expect(page.locator("tr[data-event] .status")).to_contain_text("Success")
    check_text(page)
    shot(page, "25-events-single")
    assert errors == [], errors
