"""The operator dashboard as a place to work (issue 16), end to end in a real headless
browser: Debian's chromium driven by Playwright, as tests/e2e/test_dashboard.py does.
Screenshots of every page land in test-artifacts/dashboard-operator/.

The operator signs in, creates an endpoint, gives it a subscription whose filter is tried on
a pasted sample first, sends it an event and sees it delivered; the receiver fails, the next
event fails, and once the receiver recovers the operator retries it from the delivery page
(and force-resends and replays it); then makes an API key with the broadcast grant (by
keyboard alone), a portal link, rotates the endpoint's secret, edits, pauses and deletes it.
Every refusal on the way is the API's own message, in an alert next to its form.
An ordered endpoint: its blocked keys listed with the delivery that blocks each, skipped
or retried from its page.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from playwright.sync_api import Browser, Page, expect

from support import Behaviour, Gateway, Project, Receiver, wait_until

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "dashboard-operator"
#: two tries a second apart: a failing delivery ends as Failure quickly; the breaker never
#: opens (it would hold the retry)
CONFIG = {
    "strategy": {"type": "linear", "duration": 1, "retry_count": 2},
    "circuit_breaker": {"minimum_request_count": 1000, "disable_after_trips": 0},
}
WAIT_MS = 15_000
#: the keyboard focus ring (style.css): a 2 px solid outline in the accent colour
FOCUS_JS = """() => {
  const el = document.activeElement, style = getComputedStyle(el);
  return {tag: el.tagName, id: el.id, type: el.type || "", text: (el.textContent || "").trim(),
          outline: [style.outlineStyle, style.outlineWidth, style.outlineColor],
          visible: el.matches(":focus-visible")};
}"""
RING = ["solid", "2px", "rgb(52, 87, 213)"]


class Tab:
    """A page with the page errors and CSP complaints it met."""

    def __init__(self, browser: Browser) -> None:
        self.context = browser.new_context(viewport={"width": 1280, "height": 900})
        self.page = self.context.new_page()
        self.page.set_default_timeout(WAIT_MS)
        self.errors: list[str] = []
        self.page.on("pageerror", lambda exc: self.errors.append(str(exc)))
        self.page.on(
            "console",
            lambda msg: (
                self.errors.append(msg.text)
                if "Content Security Policy" in msg.text or "Refused to" in msg.text
                else None
            ),
        )

    def shot(self, name: str) -> None:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        self.page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


@pytest.fixture
def tab(browser: Browser, request: pytest.FixtureRequest) -> Iterator[Tab]:
    expect.set_options(timeout=WAIT_MS)
    t = Tab(browser)
    yield t
    t.shot(f"zz-last-{request.node.name}")  # what it showed at the end, passed or failed
    t.context.close()


def focused(page: Page) -> dict[str, Any]:
    found: dict[str, Any] = page.evaluate(FOCUS_JS)
    return found


def tab_to(page: Page, done: str, limit: int = 60) -> dict[str, Any]:
    """Press Tab until the focused element satisfies the JS predicate *done* (bounded);
    every element it stops on shows the focus ring."""
    for _ in range(limit):
        page.keyboard.press("Tab")
        now = focused(page)
        assert now["visible"] and now["outline"] == RING, now
        if page.evaluate(f"() => {{ const el = document.activeElement; return {done}; }}"):
            return now
    raise AssertionError(f"Tab never reached {done}: at {focused(page)}")


def sub_of(project: Project, endpoint_id: str) -> list[dict[str, Any]]:
    return project.ok("GET", "/subscriptions", params={"endpointId": endpoint_id})["content"]  # type: ignore[no-any-return]


def sent_event_id(page: Page) -> str:
    """The event the "Send a test event" form just sent, from its outcome's link."""
    link = page.locator("#send-test [role=status] a")
    expect(link).to_have_count(1)
    return link.inner_text()


def test_operator_works_in_the_dashboard(gateway: Gateway, receiver: Receiver, tab: Tab) -> None:
    project = gateway.create_project("shop", CONFIG)
    page = tab.page

    # sign in with the project's admin key
    page.goto(gateway.base + "/dashboard/#/login")
    page.fill("#key", project.key)
    page.click("button[type=submit]")
    page.get_by_role("link", name="shop").click()
    expect(page.get_by_role("heading", name="Endpoints")).to_be_visible()
    expect(page.get_by_text("No endpoints yet.")).to_be_visible()
    tab.shot("01-endpoints-empty")

    # ---- a new endpoint: the API's refusal first, next to the form, then created
    page.click("a.new-endpoint")
    expect(page.get_by_role("heading", name="New endpoint")).to_be_visible()
    expect(page.locator("#ep-name")).to_be_focused()
    page.get_by_label("Name").fill("orders-service")
    page.get_by_label("URL").fill("ftp://example.com/hooks")
    page.get_by_label("Owner ID").fill("acme")
    page.click("#new-endpoint button[type=submit]")
    refusal = page.locator("#new-endpoint [role=alert]")
    expect(refusal).to_have_text("endpoint url must use http or https")
    tab.shot("02-new-endpoint-refused")
    page.get_by_label("URL").fill(receiver.url + "/orders")
    page.get_by_label("Timeout (s)").fill("5")
    page.click("#new-endpoint button[type=submit]")
    expect(page.get_by_role("heading", name="orders-service")).to_be_visible()
    expect(page.get_by_role("status").first).to_contain_text("Endpoint created")
    [endpoint] = project.ok("GET", "/endpoints")["content"]
    assert endpoint["url"] == receiver.url + "/orders" and endpoint["owner_id"] == "acme"
    assert endpoint["http_timeout"] == 5
    eid = endpoint["uid"]
    tab.shot("03-endpoint-created")

    # ---- a subscription whose filter is tried on a pasted sample before it is saved
    page.click("a.new-subscription")
    expect(page.get_by_role("heading", name="New subscription")).to_be_visible()
    assert page.locator("#sub-endpoint").input_value() == eid
    page.get_by_label("Name", exact=True).fill("large paid invoices")
    page.get_by_label("Event types").fill("invoice.paid")
    page.get_by_label("Body filter (JSON)").fill('{"amount": {"$bogus": 100}}')
    page.get_by_label("Sample event type").fill("invoice.paid")
    page.get_by_label("Sample payload (JSON data)").fill('{"invoice": "INV-1", "amount": 50}')
    verdict = page.locator("#filter-verdict")
    page.click("button.test-filter")  # an operator the API does not know: its 400, shown
    expect(page.locator("fieldset.sample [role=alert]")).to_contain_text("$bogus")
    expect(verdict).to_have_text("")
    page.get_by_label("Body filter (JSON)").fill('{"amount": {"$gte": 100}}')
    page.click("button.test-filter")
    expect(verdict).to_contain_text("No match")
    expect(page.locator("fieldset.sample [role=alert]")).to_have_count(0)
    page.get_by_label("Sample payload (JSON data)").fill('{"invoice": "INV-1", "amount": 150}')
    page.click("button.test-filter")
    expect(verdict).to_contain_text("Match")
    expect(verdict).not_to_contain_text("No match")
    page.get_by_label("Sample event type").fill("invoice.failed")  # not a type it takes
    page.click("button.test-filter")
    expect(verdict).to_contain_text("No match")
    tab.shot("04-subscription-filter-tested")
    page.click("#subscription-form button[type=submit]")
    expect(page.get_by_role("heading", name="orders-service")).to_be_visible()
    expect(page.get_by_role("status").first).to_have_text("Subscription saved.")
    [sub] = sub_of(project, eid)
    assert sub["name"] == "large paid invoices"
    assert sub["filter_config"]["event_types"] == ["invoice.paid"]
    assert sub["filter_config"]["filter"]["body"] == {"amount": {"$gte": 100}}
    row = page.locator(f"tr[data-subscription='{sub['uid']}']")
    expect(row.locator(".filter")).to_contain_text("invoice.paid")
    expect(row.locator(".filter")).to_contain_text('"$gte":100')

    # ---- a test event from the endpoint's page: delivered, its attempt shown
    page.get_by_label("Event type").fill("invoice.paid")
    page.get_by_label("Data (JSON)").fill('{"invoice": "INV-2", "amount": 120}')
    page.click("#send-test button[type=submit]")
    expect(page.locator("#send-test [role=status]")).to_contain_text("1 delivery queued")
    first_event = sent_event_id(page)
    delivered = page.locator("#endpoint-deliveries tr[data-delivery]")
    expect(delivered).to_have_count(1)
    expect(delivered.locator(".status")).to_have_text("Success")
    expect(delivered.locator(".attempts")).to_have_text("1")
    tab.shot("05-endpoint-delivered")
    # an event its filter refuses: stored, nothing sent, and the page says so
    page.get_by_label("Data (JSON)").fill('{"invoice": "INV-3", "amount": 5}')
    page.click("#send-test button[type=submit]")
    expect(page.locator("#send-test [role=status]")).to_contain_text("nothing will be sent")
    # bad JSON is refused before it leaves the page
    page.get_by_label("Data (JSON)").fill('{"invoice": ')
    page.click("#send-test button[type=submit]")
    expect(page.locator("#send-test [role=alert]")).to_contain_text("Data is not valid JSON")
    delivered.locator("a").first.click()
    expect(page.get_by_role("heading", name="Delivery")).to_be_visible()
    expect(page.locator(".actions .status")).to_have_text("Success")
    attempts = page.locator("tr[data-attempt]")
    expect(attempts).to_have_count(1)
    attempts.first.click()
    expect(page.locator("#attempt-detail")).to_contain_text("200")
    tab.shot("06-delivery-success")
    assert [d["event_id"] for d in project.deliveries(endpointId=eid)] == [first_event]

    # ---- the receiver fails: the next event fails (2 tries), and is retried once it recovers
    receiver.behave("/orders", Behaviour(500, body=b'{"error":"orders is down"}'))
    page.click("nav >> text=Endpoints")
    page.click(f"tr[data-endpoint='{eid}'] a >> text=orders-service")
    expect(page.get_by_role("heading", name="orders-service")).to_be_visible()
    page.get_by_label("Event type").fill("invoice.paid")
    page.get_by_label("Data (JSON)").fill('{"invoice": "INV-4", "amount": 400}')
    page.click("#send-test button[type=submit]")
    failing_event = sent_event_id(page)
    assert wait_until(
        lambda: [d["status"] for d in project.deliveries(eventId=failing_event)] == ["Failure"],
        15,
    ), project.deliveries()
    [failing] = project.deliveries(eventId=failing_event)
    failed_row = page.locator(f"#endpoint-deliveries tr[data-delivery='{failing['uid']}']")
    expect(failed_row.locator(".status")).to_have_text("Failure")
    expect(failed_row.locator(".attempts")).to_have_text("2")
    tab.shot("07-endpoint-failure")
    failed_row.locator("a").first.click()
    expect(page.locator(".actions .status")).to_have_text("Failure")
    expect(attempts).to_have_count(2)
    attempts.first.click()
    expect(page.locator("#attempt-detail")).to_contain_text("orders is down")
    tab.shot("08-delivery-failure")
    receiver.behave("/orders", Behaviour(200))
    page.click("button.resend")
    expect(page.get_by_role("status").first).to_contain_text("queued for another try")
    expect(page.locator(".actions .status")).to_have_text("Success")
    expect(attempts).to_have_count(3)
    expect(page.locator("button.resend")).to_have_count(0)
    tab.shot("09-delivery-retried")
    # force-resend (it succeeded) and replay the event: each says how it went, and sends
    page.click("button.force-resend")
    expect(page.get_by_role("status").first).to_contain_text("Force resend: 1 successful, 0 failed")
    expect(attempts).to_have_count(4)
    expect(page.locator("button.force-resend")).to_be_focused()  # the redraw kept its place
    expect(page.locator(".actions .status")).to_have_text("Success")
    page.click("button.replay")
    expect(page.get_by_role("status").first).to_contain_text("replayed successfully")
    expect(attempts).to_have_count(5)
    expect(page.locator(".actions .status")).to_have_text("Success")
    tab.shot("10-delivery-force-resent-replayed")
    assert len([r for r in receiver.at("/orders") if b"INV-4" in r.body]) == 5
    # the event's page replays too, and says what it did
    page.goto(f"{gateway.base}/dashboard/#/p/{project.id}/events/{first_event}")
    expect(page.locator("tr[data-delivery] .status")).to_have_text("Success")
    page.click("button.replay")
    expect(page.get_by_role("status").first).to_contain_text("replayed successfully")
    # (a replay gives the delivery a fresh budget of tries: its count starts again)
    assert wait_until(
        lambda: len([r for r in receiver.at("/orders") if b"INV-2" in r.body]) == 2, 10
    )
    expect(page.locator("tr[data-delivery] .status")).to_have_text("Success")
    tab.shot("11-event-replayed")

    # ---- an API key with the broadcast grant, by keyboard alone
    page.click("nav >> text=API keys")
    expect(page.get_by_role("heading", name="API keys")).to_be_visible()
    expect(page.locator("tr[data-key]")).to_have_count(1)  # the one signed in with
    expect(page.locator("#new-key")).to_contain_text("every customer at once")
    page.locator("h1").click()  # where the keyboard walk starts (the mouse goes no further)
    tab_to(page, "el.id === 'key-name'")
    page.keyboard.type("fleet-broadcaster")
    tab_to(page, "el.id === 'key-role'")
    page.keyboard.press("ArrowUp")  # publisher -> admin
    tab_to(page, "el.id === 'key-days'")
    page.keyboard.type("30")
    tab_to(page, "el.id === 'key-broadcast'")
    page.keyboard.press("Space")
    assert page.is_checked("#key-broadcast")
    now = tab_to(page, "el.tagName === 'BUTTON' && el.type === 'submit'")
    assert now["text"] == "Create key"
    tab.shot("12-key-form-keyboard")
    page.keyboard.press("Enter")
    token_box = page.locator("input.new-key-token")
    expect(token_box).to_be_visible()
    token = token_box.input_value()
    expect(page.locator("#new-key [role=status]")).to_contain_text("(admin, may broadcast)")
    keys = {k["name"]: k for k in project.ok("GET", "/api-keys")}
    made = keys["fleet-broadcaster"]
    assert made["role"] == "admin" and made["broadcast"] is True and made["expires_at"]
    assert not page.is_checked("#key-broadcast")  # the form is ready for the next one
    tab.shot("13-key-created")
    r = requests.post(
        f"{project.base}/events/broadcast",
        json={"event_type": "fleet.update", "data": {"v": 1}},
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )
    assert r.status_code == 201, r.text  # the token shown works, and may broadcast
    # the API's refusal of a bad expiry, next to the form
    page.fill("#key-days", "99999")
    page.click("#new-key button[type=submit]")
    expect(page.locator("#new-key [role=alert]")).to_contain_text("expires_in_days")
    # revoke it, after a confirmation
    key_row = page.locator(f"tr[data-key='{made['uid']}']")
    key_row.locator("button.revoke").click()
    expect(key_row.locator("button.confirm-revoke")).to_be_focused()
    key_row.locator("button.confirm-revoke").click()
    expect(page.locator(f"tr[data-key='{made['uid']}'] .status")).to_have_text("revoked")
    r = requests.get(
        f"{project.base}/endpoints", headers={"Authorization": f"Bearer {token}"}, timeout=10
    )
    assert r.status_code == 401, r.text
    tab.shot("14-key-revoked")

    # ---- a portal link: its URL shown to copy, and it opens the portal
    page.click("nav >> text=Portal links")
    expect(page.get_by_role("heading", name="Portal links")).to_be_visible()
    page.click("#new-link button[type=submit]")  # nothing filled in: the API's words
    expect(page.locator("#new-link [role=alert]")).not_to_be_empty()
    page.get_by_label("Name").fill("Acme Inc.")
    page.get_by_label("Owner ID").fill("acme")
    page.get_by_label("Let the customer manage its endpoints").check()
    page.click("#new-link button[type=submit]")
    url_box = page.locator("input.portal-url")
    expect(url_box).to_be_visible()
    portal_url = url_box.input_value()
    page.click("#new-link button.copy")  # copied, or told how to copy it by hand
    expect(page.locator("#new-link .copied")).not_to_be_empty()
    assert portal_url.startswith(gateway.base + "/portal?token=PRT."), portal_url
    [link] = project.ok("GET", "/portal-links")["content"]
    assert link["owner_id"] == "acme" and link["can_manage_endpoint"] is True
    link_row = page.locator(f"tr[data-link='{link['uid']}']")
    expect(link_row).to_contain_text("manages endpoints")
    expect(link_row).to_contain_text("1")  # acme's endpoint
    tab.shot("15-portal-link-created")
    r = requests.get(portal_url, timeout=10)
    assert f'<meta name="portal-project" content="{project.id}">' in r.text
    # a new URL for it: the last one stops working
    link_row.locator("button.new-url").click()
    renewed = page.locator("#link-notice input.portal-url")
    expect(renewed).to_be_visible()
    second_url = renewed.input_value()
    assert second_url != portal_url and second_url.startswith(gateway.base + "/portal?token=PRT.")
    assert "portal-project" not in requests.get(portal_url, timeout=10).text
    link_row.locator("button.revoke").click()
    link_row.locator("button.confirm-revoke").click()
    expect(page.get_by_role("status").first).to_contain_text("Portal link Acme Inc. revoked.")
    assert "portal-project" not in requests.get(second_url, timeout=10).text
    tab.shot("16-portal-link-revoked")

    # ---- the endpoint again: rotate its secret, edit it, pause it, delete it
    page.click("nav >> text=Endpoints")
    page.click(f"tr[data-endpoint='{eid}'] a >> text=orders-service")
    expect(page.locator("ul.secrets li")).to_have_count(1)
    old_secret = project.ok("GET", f"/endpoints/{eid}")["secrets"][0]["value"]
    page.get_by_label("Keep the old secret valid for").select_option("86400")
    page.click("#rotate-secret button[type=submit]")
    new_secret = page.locator("input.new-secret")
    expect(new_secret).to_be_visible()
    secrets = project.ok("GET", f"/endpoints/{eid}")["secrets"]
    assert [s["value"] for s in secrets] == [old_secret, new_secret.input_value()]
    assert secrets[0]["expires_at"] and secrets[1]["expires_at"] is None
    expect(page.locator("ul.secrets li")).to_have_count(2)
    expect(page.locator("ul.secrets li").first).to_contain_text("valid until")
    expect(page.locator("main")).not_to_contain_text(old_secret)  # never shown
    tab.shot("17-secret-rotated")

    edit = page.locator("#edit-endpoint")
    edit.get_by_label("Name").fill("orders-v2")
    edit.get_by_label("Rate limit", exact=True).fill("50")
    edit.get_by_label("Rate limit window (s)").fill("60")
    edit.get_by_label("Description").fill("the orders service, v2")
    page.click("#edit-endpoint button[type=submit]")
    expect(edit.get_by_role("status")).to_have_text("Endpoint saved.")
    expect(page.get_by_role("heading", name="orders-v2")).to_be_visible()
    saved = project.ok("GET", f"/endpoints/{eid}")
    assert (saved["name"], saved["rate_limit"], saved["rate_limit_duration"]) == (
        "orders-v2",
        50,
        60,
    )
    assert saved["description"] == "the orders service, v2"
    edit.get_by_label("URL").fill("not a url")
    page.click("#edit-endpoint button[type=submit]")
    expect(edit.locator("[role=alert]")).not_to_be_empty()
    tab.shot("18-endpoint-edited")

    # its subscription, edited (the editor keeps what was saved) and deleted
    page.locator(f"tr[data-subscription='{sub['uid']}'] a.button").click()
    expect(page.get_by_role("heading", name="Subscription large paid invoices")).to_be_visible()
    expect(page.get_by_label("Event types")).to_have_value("invoice.paid")
    assert '"$gte": 100' in page.get_by_label("Body filter (JSON)").input_value()
    page.get_by_label("Event types").fill("invoice.paid, invoice.refunded")
    page.get_by_label("Sample event type").fill("invoice.refunded")
    page.get_by_label("Sample payload (JSON data)").fill('{"amount": 100}')
    page.click("button.test-filter")
    expect(page.locator("#filter-verdict")).to_have_text(re.compile(r"^Match"))
    tab.shot("18a-subscription-edit")
    page.click("#subscription-form button[type=submit]")
    expect(page.get_by_role("status").first).to_have_text("Subscription saved.")
    [changed] = sub_of(project, eid)
    assert changed["filter_config"]["event_types"] == ["invoice.paid", "invoice.refunded"]
    sub_row = page.locator(f"tr[data-subscription='{sub['uid']}']")
    sub_row.locator("button.delete-subscription").click()
    sub_row.locator("button.confirm-delete-subscription").click()
    expect(page.get_by_role("status").first).to_have_text(
        "Subscription large paid invoices deleted."
    )
    expect(page.locator("tr[data-subscription]")).to_have_count(0)
    assert sub_of(project, eid) == []

    page.click("button.pause")
    expect(page.locator("h1 .ep-status")).to_have_text("paused")
    expect(page.locator("button.activate")).to_be_focused()
    assert project.ok("GET", f"/endpoints/{eid}")["status"] == "paused"
    tab.shot("19-endpoint-paused")
    page.click("button.activate")
    expect(page.locator("h1 .ep-status")).to_have_text("active")
    assert project.ok("GET", f"/endpoints/{eid}")["status"] == "active"

    # delete it, after a confirmation (Escape backs out; the keyboard goes on from there)
    page.click("button.delete")
    expect(page.locator("button.confirm-delete")).to_be_focused()
    page.keyboard.press("Escape")
    expect(page.locator("button.delete")).to_be_focused()
    expect(page.locator("button.confirm-delete")).to_be_hidden()
    page.keyboard.press("Enter")
    expect(page.locator("button.confirm-delete")).to_be_focused()
    assert focused(page)["outline"] == RING
    tab.shot("20-delete-confirm")
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name="Endpoints")).to_be_visible()
    expect(page.get_by_role("status").first).to_have_text("Endpoint orders-v2 deleted.")
    expect(page.locator("tr[data-endpoint]")).to_have_count(0)
    assert project.call("GET", f"/endpoints/{eid}").status_code == 404
    tab.shot("21-endpoint-deleted")

    assert tab.errors == [], tab.errors


def test_operator_orders_an_endpoint_and_unblocks_its_keys(
    gateway: Gateway, receiver: Receiver, tab: Tab
) -> None:
    """Ordering per key set from the edit form; a key blocked by a delivery that failed for
    good is listed on the endpoint's page with that delivery; "Skip it" lets the key go on
    without it, "Retry it" sends it again first."""
    project = gateway.create_project("ordered", CONFIG)
    ep = project.endpoint(receiver.url + "/ordered", name="ledger")
    page = tab.page
    page.goto(gateway.base + "/dashboard/#/login")
    page.fill("#key", project.key)
    page.click("button[type=submit]")
    page.get_by_role("link", name="ordered").click()
    page.get_by_role("link", name="ledger").click()
    expect(page.locator(".ep-ordering")).to_have_text("none")
    expect(page.locator("#blocked-keys")).to_be_empty()

    page.get_by_label("Ordering", exact=True).select_option("per_key")
    page.click("#edit-endpoint button[type=submit]")
    expect(page.locator("#edit-endpoint [role=status]")).to_have_text("Endpoint saved.")
    expect(page.locator(".ep-ordering")).to_contain_text("per key")
    assert project.ok("GET", f"/endpoints/{ep['uid']}")["ordering"] == "per_key"
    expect(page.locator("#blocked-keys")).to_contain_text("every ordering key is moving")

    # two keys, each blocked by its first delivery; their second ones wait behind
    receiver.behave("/ordered", Behaviour(status=500))
    first = {k: project.publish(ep["uid"], data={"k": k, "n": 1}, ordering_key=k) for k in "ab"}
    for k in "ab":
        project.publish(ep["uid"], data={"k": k, "n": 2}, ordering_key=k)
    rows = page.locator("#blocked-keys tr[data-blocked-key]")
    expect(rows).to_have_count(2, timeout=20_000)
    tab.shot("20-blocked-keys")
    seen_while_blocked = len(receiver.at("/ordered"))
    receiver.behave("/ordered", Behaviour(status=200))

    def sent(k: str) -> list[int]:
        bodies = [json.loads(r.body) for r in receiver.at("/ordered")]
        return [d["n"] for d in bodies if d.get("k") == k]

    # skip a: its second delivery goes, its first stays failed, recorded as skipped
    page.locator("tr[data-blocked-key=a] button.skip-blocked").click()
    expect(page.locator("#blocked-keys [role=status]")).to_contain_text("skipped")
    expect(rows).to_have_count(1)
    assert wait_until(lambda: 2 in sent("a"), 15), receiver.at("/ordered")
    assert len(receiver.at("/ordered")) > seen_while_blocked
    # retry b: its first delivery goes again, before its second
    page.locator("tr[data-blocked-key=b] button.retry-blocked").click()
    expect(rows).to_have_count(0)
    assert wait_until(lambda: 2 in sent("b"), 15), receiver.at("/ordered")
    assert sent("b")[-2:] == [1, 2] and sent("a")[-1] == 2
    skipped = project.ok("GET", "/eventdeliveries", params={"eventId": first["a"]["uid"]})
    assert "skipped by an operator" in skipped["content"][0]["description"]
    tab.shot("21-keys-unblocked")
    assert not tab.errors, tab.errors
