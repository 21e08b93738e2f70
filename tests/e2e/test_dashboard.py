"""The web dashboard, end to end in a real headless browser.

Debian's chromium (``apt-get install -y chromium``; .ci/run installs it) driven by
Playwright's Python package, launched by its executable path: nothing downloads a browser.
Screenshots of every page land in test-artifacts/dashboard/.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from playwright.sync_api import Browser, Page, expect, sync_playwright

from support import ADMIN_KEY, Behaviour, Gateway, Project, Receiver, wait_until

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "dashboard"
#: two tries a second apart: a failing delivery ends as Failure quickly; the breaker trips
#: on the 4th failure (2 events x 2 tries) and lets a probe through a second later
CONFIG = {
    "strategy": {"type": "linear", "duration": 1, "retry_count": 2},
    "circuit_breaker": {"minimum_request_count": 4, "error_timeout_s": 1, "disable_after_trips": 0},
}
BROADCAST_TARGETS = 24
WAIT_MS = 15_000


@pytest.fixture
def browser() -> Iterator[Browser]:
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(
            f"{CHROMIUM} is missing: the dashboard tests need Debian's chromium. Install it "
            "with `apt-get install -y chromium` (as root; .ci/run does this in CI).",
            pytrace=False,
        )
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    page = browser.new_page(viewport={"width": 1280, "height": 860})
    page.set_default_timeout(WAIT_MS)
    expect.set_options(timeout=WAIT_MS)
    yield page
    shot(page, "zz-last")  # what the browser showed at the end, passed or failed
    page.close()


def shot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


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
        project.ok(
            "POST",
            "/subscriptions",
            201,
            json={"name": f"all-{i}", "endpoint_id": ep["uid"], "filter_config": {}},
        )
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

    # a broadcast sent from the dashboard, watched live to the end
    page.click("nav >> text=Broadcasts")
    page.fill("input[name=event_type]", "fleet.update")
    page.fill("textarea[name=data]", '{"version": "2.4.1"}')
    shot(page, "09-broadcast-form")
    page.click("form.broadcast-form button[type=submit]")
    expect(page.get_by_role("heading", name=re.compile("^Broadcast"))).to_be_visible()
    expect(page.locator("#bc-pct")).not_to_have_text("0 %")
    shot(page, "10-broadcast-live")
    expect(page.locator("#bc-pct")).to_have_text("100 %", timeout=30_000)
    succeeded = page.locator(".stat.good .stat-value")
    expect(succeeded).to_have_text(str(2 + BROADCAST_TARGETS))  # orders and billing too
    expect(page.locator("svg.chart path.series.ok")).to_have_count(1)
    expect(page.locator("svg.bars")).to_contain_text("ms")
    shot(page, "11-broadcast-done")

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
