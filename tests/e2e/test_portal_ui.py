"""The customer portal (``/portal?token=PRT.…``, issue 16), end to end in a real headless
browser, through portal links only.

Debian's chromium driven by Playwright's Python package, launched by its executable path
(as tests/e2e/test_dashboard.py does): nothing downloads a browser. Screenshots of every
page land in test-artifacts/portal/.

* a managing link's customer sees only its owner's endpoints, adds one with the keyboard
  alone, reveals and rotates its secret, chooses its event types, sees a failed delivery
  (attempts with request headers redacted) and retries it, pauses, activates and deletes;
* a second owner's read-only link sees none of that: not in its lists, not by address, and
  no button that manages anything;
* the page's Content-Security-Policy carries HOOKCAST_PORTAL_FRAME_ANCESTORS: an allowed
  origin frames the portal, another is refused; the theme comes from safe query values
  only; the token leaves the address bar at once.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from playwright.sync_api import Browser, BrowserContext, Page, expect

from support import Behaviour, Gateway, Project, Receiver, make_settings, wait_until

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "portal"
#: two attempts a second apart, so that a failing delivery ends as Failure quickly; the
#: breaker never opens (it would hold the retry)
CONFIG = {
    "strategy": {"type": "linear", "duration": 1, "retry_count": 2},
    "circuit_breaker": {"minimum_request_count": 1000, "disable_after_trips": 0},
}
WAIT_MS = 15_000
#: the focus ring of the portal's default theme (portal.css)
FOCUS_JS = """() => {
  const el = document.activeElement;
  const style = getComputedStyle(el);
  return [el.tagName, style.outlineStyle, style.outlineWidth];
}"""
ACTIVE_JS = """() => {
  const el = document.activeElement;
  return {tag: el.tagName, id: el.id, type: el.type || "", value: el.value || "",
          text: (el.textContent || "").trim()};
}"""
CATALOG = [
    {
        "name": "invoice.failed",
        "category": "billing",
        "description": "A payment attempt for an invoice failed.",
        "example": {"invoice": "INV-1", "amount": 1200, "reason": "card_declined"},
    },
    {
        "name": "invoice.paid",
        "category": "billing",
        "description": "An invoice was paid in full.",
        "example": {"invoice": "INV-1", "amount": 1200},
    },
    {
        "name": "customer.created",
        "category": "customers",
        "description": "A customer signed up.",
        "example": {"customer": "cus_1", "email": "ada@example.com"},
    },
]


@pytest.fixture
def embedder() -> Iterator[Receiver]:
    """The provider's app, on an origin of its own (127.0.0.1, another port: loopback, so
    that chromium's local network access rules stay out of the way)."""
    r = Receiver()
    yield r
    r.stop()


def frame_ancestors(embedder: Receiver) -> str:
    return f"'self' {embedder.url}"


@pytest.fixture
def gateway(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, embedder: Receiver
) -> Iterator[Gateway]:
    # the portal's frame-ancestors setting, as an operator sets it: the embedder may frame
    # the portal
    monkeypatch.setenv("HOOKCAST_PORTAL_FRAME_ANCESTORS", frame_ancestors(embedder))
    gw = Gateway(make_settings(str(tmp_path / "hookcast.db")))
    yield gw
    gw.stop()


class Tab:
    """A browser context of its own (its own sessionStorage: one customer) and its page,
    with the page errors and CSP complaints it met."""

    def __init__(self, browser: Browser, name: str) -> None:
        self.name = name
        self.context: BrowserContext = browser.new_context(viewport={"width": 1200, "height": 860})
        self.page = self.context.new_page()
        self.page.set_default_timeout(WAIT_MS)
        self.errors: list[str] = []
        self.page.on("pageerror", lambda exc: self.errors.append(str(exc)))
        self.page.on(
            "console",
            lambda msg: (
                self.errors.append(msg.text) if "Content Security Policy" in msg.text else None
            ),
        )

    def shot(self, name: str) -> None:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        self.page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)

    def close(self) -> None:
        self.shot(f"zz-last-{self.name}")  # what the browser showed at the end
        self.context.close()


@pytest.fixture
def tabs(browser: Browser) -> Iterator[dict[str, Tab]]:
    expect.set_options(timeout=WAIT_MS)
    opened: dict[str, Tab] = {}
    yield opened
    for tab in opened.values():
        tab.close()


def open_tab(browser: Browser, tabs: dict[str, Tab], name: str) -> Tab:
    tabs[name] = Tab(browser, name)
    return tabs[name]


def link(project: Project, owner: str, manage: bool) -> dict[str, Any]:
    body = {"name": owner.title(), "owner_id": owner, "can_manage_endpoint": manage}
    return project.ok("POST", "/portal-links", 201, json=body)  # type: ignore[no-any-return]


def tab_to(page: Page, done: str, limit: int = 60) -> dict[str, Any]:
    """Press Tab until the focused element satisfies the JS predicate *done* (bounded)."""
    for _ in range(limit):
        page.keyboard.press("Tab")
        if page.evaluate(f"() => {{ const el = document.activeElement; return {done}; }}"):
            found: dict[str, Any] = page.evaluate(ACTIVE_JS)
            return found
    raise AssertionError(f"Tab never reached {done}: at {page.evaluate(ACTIVE_JS)}")


def check_focus_ring(page: Page, tag: str) -> None:
    got = page.evaluate(FOCUS_JS)
    assert got[0] == tag and got[1] == "solid" and got[2] == "3px", got


def _seed(project: Project, receiver: Receiver) -> dict[str, Any]:
    for body in CATALOG:
        project.ok("POST", "/event-types", 201, json=body)
    receiver.behave("/acme/new", Behaviour(500, body=b'{"error":"acme billing is down"}'))
    receiver.behave("/globex", Behaviour(500, body=b'{"error":"globex is down"}'))
    acme = project.endpoint(receiver.url + "/acme/orders", name="acme-orders", owner_id="acme")
    globex = project.endpoint(receiver.url + "/globex", name="globex-main", owner_id="globex")
    acme_event = project.publish(acme["uid"], "invoice.paid", {"invoice": "ACME-1"})
    project.publish(globex["uid"], "invoice.failed", {"invoice": "GLOBEX-1"})
    assert wait_until(
        lambda: sorted(d["status"] for d in project.deliveries()) == ["Failure", "Success"], 15
    ), project.deliveries()
    [acme_delivery] = project.deliveries(endpointId=acme["uid"])
    return {
        "acme": acme,
        "globex": globex,
        "acme_event": acme_event,
        "acme_delivery": acme_delivery,
        "acme_link": link(project, "acme", True),
        "globex_link": link(project, "globex", False),
    }


def test_portal_page_headers(gateway: Gateway, embedder: Receiver) -> None:
    project = gateway.create_project("shop")
    acme = link(project, "acme", True)
    assert acme["url"].startswith(gateway.base + "/portal?token=PRT.")
    r = requests.get(acme["url"], timeout=10)
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("text/html")
    csp = r.headers["Content-Security-Policy"]
    assert csp.endswith(f"frame-ancestors {frame_ancestors(embedder)}"), csp
    for strict in (
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "base-uri 'none'",
    ):
        assert strict in csp
    assert "unsafe" not in csp
    assert "X-Frame-Options" not in r.headers  # it would forbid the allowed embedder
    assert r.headers["Referrer-Policy"] == "no-referrer"
    assert r.headers["Cache-Control"] == "no-store"  # rendered for one token
    assert f'<meta name="portal-project" content="{project.id}">' in r.text
    assert '<meta name="portal-manage" content="true">' in r.text
    assert "hookcast" not in r.text.lower()  # no branding required
    # a refused token: the page says why, and learns no project
    r = requests.get(gateway.base + "/portal?token=PRT.aaaaaaaaaaaaaaaa.nope", timeout=10)
    assert r.status_code == 200 and "portal-project" not in r.text
    assert '<meta name="portal-error" content="authorization failed">' in r.text
    # an API key is not a portal token
    r = requests.get(f"{gateway.base}/portal?token={project.key}", timeout=10)
    assert "portal-project" not in r.text and "not a portal link" in r.text
    # its files
    r = requests.get(gateway.base + "/portal/portal.js", timeout=10)
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("text/javascript")
    assert r.headers["Content-Security-Policy"] == csp
    r = requests.get(gateway.base + "/portal/..%2Fstatic%2Fapp.js", timeout=10)
    assert r.status_code == 404
    # the dashboard keeps its own policy: framed by nobody
    r = requests.get(gateway.base + "/dashboard/", timeout=10)
    assert r.headers["Content-Security-Policy"].endswith("frame-ancestors 'none'")


def test_customer_portal_end_to_end(
    gateway: Gateway, receiver: Receiver, browser: Browser, tabs: dict[str, Tab]
) -> None:
    project = gateway.create_project("shop", CONFIG)
    seeded = _seed(project, receiver)
    acme = open_tab(browser, tabs, "acme")
    page = acme.page

    # the link as the provider hands it out, themed by safe values only: an unsafe one is
    # ignored
    url = seeded["acme_link"]["url"] + "&accent=%23b4235a&title=Acme+webhooks&bg=red;}body{x:y"
    page.goto(url)
    expect(page.get_by_role("heading", name="Your endpoints")).to_be_visible()
    # the token left the address bar (and so the history and any Referer) at once; the tab
    # keeps it
    assert "token" not in page.url and "PRT." not in page.url, page.url
    assert "accent=%23b4235a" in page.url  # the theme stays
    token = seeded["acme_link"]["token"]
    assert page.evaluate("sessionStorage.getItem('portal.token')") == token
    root = "getComputedStyle(document.documentElement)"
    assert page.evaluate(f"{root}.getPropertyValue('--portal-accent')").strip() == "#b4235a"
    assert page.evaluate(f"{root}.getPropertyValue('--portal-bg')").strip() == "#ffffff"
    expect(page.locator("#title")).to_have_text("Acme webhooks")

    # only acme's endpoints
    rows = page.locator("tr[data-endpoint]")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("acme-orders")
    expect(page.locator("main")).not_to_contain_text("globex")
    acme.shot("01-acme-endpoints")

    # an endpoint the API refuses: its words, in an alert
    page.fill("#new-url", "ftp://example.com/hooks")
    page.click("#add-endpoint button[type=submit]")
    expect(page.get_by_role("alert")).to_have_text("endpoint url must use http or https")
    acme.shot("02-add-refused")

    # add one with the keyboard alone: Tab from the top of the view to the form, fill it,
    # tick an event type of the catalog (its description is there), submit with Enter
    page.fill("#new-url", "")
    page.locator("h1").focus()
    tab_to(page, "el.id === 'new-url'")
    check_focus_ring(page, "INPUT")
    page.keyboard.type(receiver.url + "/acme/new")
    page.keyboard.press("Tab")
    page.keyboard.type("billing hook")
    page.keyboard.press("Tab")
    page.keyboard.type("Our billing service")
    expect(page.locator("#add-endpoint li[data-event-type='invoice.failed']")).to_contain_text(
        "A payment attempt for an invoice failed."
    )
    tab_to(page, "el.type === 'checkbox' && el.value === 'invoice.failed'")
    check_focus_ring(page, "INPUT")
    page.keyboard.press("Space")
    assert page.is_checked("#add-endpoint input[value='invoice.failed']")
    tab_to(page, "el.tagName === 'BUTTON' && el.type === 'submit'")
    check_focus_ring(page, "BUTTON")
    acme.shot("03-add-form-keyboard")
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name="billing hook")).to_be_visible()
    expect(page.get_by_role("status")).to_have_text("Endpoint added.")
    added = [e for e in project.ok("GET", "/endpoints")["content"] if e["name"] == "billing hook"]
    assert len(added) == 1 and added[0]["owner_id"] == "acme"
    endpoint = added[0]
    [sub] = project.ok("GET", "/subscriptions", params={"endpointId": endpoint["uid"]})["content"]
    assert sub["filter_config"]["event_types"] == ["invoice.failed"]
    expect(page.locator("ul.subscribed, form.edit-types")).to_contain_text("invoice.failed")
    assert page.is_checked("form.edit-types input[value='invoice.failed']")

    # the secret: masked, revealed on demand, then rotated (the old one signs for an hour)
    secret = endpoint["secrets"][0]["value"]
    value = page.locator("ul.secrets li").first.locator(".secret-value")
    expect(value).not_to_contain_text(secret[8:])
    # (with the keyboard: each button and the rotate form show the focus)
    page.locator("h1").focus()
    tab_to(page, "el.classList.contains('reveal')")
    check_focus_ring(page, "BUTTON")
    page.keyboard.press("Enter")
    expect(value).to_have_text(secret)
    expect(page.locator("button.reveal").first).to_have_attribute("aria-pressed", "true")
    page.keyboard.press("Tab")
    check_focus_ring(page, "SELECT")
    page.keyboard.press("Tab")
    check_focus_ring(page, "BUTTON")
    assert page.evaluate(ACTIVE_JS)["text"] == "Rotate secret"
    page.keyboard.press("Space")
    expect(page.get_by_role("status")).to_contain_text("Secret rotated")
    expect(page.locator("form.rotate-secret button[type=submit]")).to_be_focused()
    expect(page.locator("ul.secrets li")).to_have_count(2)
    expect(page.locator("ul.secrets li").nth(1)).to_contain_text("Valid until")
    secrets = project.ok("GET", f"/endpoints/{endpoint['uid']}")["secrets"]
    assert len(secrets) == 2 and secrets[0]["value"] == secret and secrets[0]["expires_at"]
    assert secrets[1]["value"] != secret and secrets[1]["expires_at"] is None
    acme.shot("04-secret-rotated")

    # the provider sends acme an invoice.failed (to its subscribed endpoints) and an
    # invoice.paid (it did not choose it): one delivery, failing (the receiver answers 500)
    project.ok(
        "POST",
        "/events/fanout",
        201,
        json={"owner_id": "acme", "event_type": "invoice.paid", "data": {"invoice": "INV-8"}},
    )
    project.ok(
        "POST",
        "/events/fanout",
        201,
        json={"owner_id": "acme", "event_type": "invoice.failed", "data": {"invoice": "INV-9"}},
    )
    delivery = page.locator("tr[data-delivery]")
    expect(delivery).to_have_count(1)
    expect(delivery.locator(".status")).to_have_text("Failure")  # the page follows it
    expect(delivery.locator(".attempts")).to_have_text("2")
    expect(delivery.locator("button.retry")).to_be_visible()
    acme.shot("05-delivery-failed")

    # its attempts: the customer's server's answer, the request headers' values hidden
    delivery.locator("a").click()
    expect(page.get_by_role("heading", name="Delivery of invoice.failed")).to_be_visible()
    attempts = page.locator("article[data-attempt]")
    expect(attempts).to_have_count(2)
    expect(attempts.first).to_contain_text("500 Internal Server Error")
    expect(attempts.first.locator("details.response")).to_contain_text("acme billing is down")
    attempts.first.locator("details.request summary").click()
    request_headers = attempts.first.locator("details.request")
    expect(request_headers).to_contain_text("[redacted]")
    signed = receiver.at("/acme/new")[0].headers
    signature = next(v for k, v in signed.items() if k.lower().endswith("signature"))
    expect(request_headers).not_to_contain_text(signature)
    expect(page.locator("pre.code").last).to_contain_text("INV-9")  # the payload
    acme.shot("06-delivery-attempts")

    # the customer fixes its server and retries
    receiver.behave("/acme/new", Behaviour(200))
    page.click("button.retry")
    expect(page.locator(".live .status")).to_have_text("Success")
    expect(attempts).to_have_count(3)
    expect(attempts.first).to_contain_text("200 OK")
    expect(page.locator("button.retry")).to_have_count(0)
    acme.shot("07-delivery-retried")
    invoices = [r for r in receiver.at("/acme/new") if b"INV-9" in r.body]
    assert len(invoices) == 3 and not any(b"INV-8" in r.body for r in receiver.at("/acme/new"))

    # back to the endpoint: it subscribes to invoice.paid too
    page.click("p.back a")
    expect(page.get_by_role("heading", name="billing hook")).to_be_visible()
    expect(page.locator("tr[data-delivery] .status")).to_have_text("Success")
    page.check("form.edit-types input[value='invoice.paid']")
    page.click("form.edit-types button[type=submit]")
    expect(page.get_by_role("status")).to_have_text("Event types saved.")
    [sub] = project.ok("GET", "/subscriptions", params={"endpointId": endpoint["uid"]})["content"]
    assert sorted(sub["filter_config"]["event_types"]) == ["invoice.failed", "invoice.paid"]

    # pause and activate
    page.click("button.pause")
    expect(page.locator(".kv .status")).to_have_text("paused")
    assert project.ok("GET", f"/endpoints/{endpoint['uid']}")["status"] == "paused"
    expect(page.locator("button.activate")).to_be_focused()
    page.click("button.activate")
    expect(page.locator(".kv .status")).to_have_text("active")
    assert project.ok("GET", f"/endpoints/{endpoint['uid']}")["status"] == "active"
    acme.shot("08-endpoint")

    # delete the other endpoint, after a confirmation
    page.click("nav >> text=Endpoints")
    expect(rows).to_have_count(2)
    page.click("tr[data-endpoint] >> text=acme-orders")
    expect(page.get_by_role("heading", name="acme-orders")).to_be_visible()
    page.click("button.delete")
    expect(page.locator("button.confirm-delete")).to_be_focused()
    acme.shot("09-delete-confirm")
    page.click("button.confirm-delete")
    expect(page.get_by_role("heading", name="Your endpoints")).to_be_visible()
    expect(page.get_by_role("status")).to_contain_text("deleted")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("billing hook")
    r = project.call("GET", f"/endpoints/{seeded['acme']['uid']}")
    assert r.status_code == 404

    # the catalog: each type with its description and an example payload
    page.click("nav >> text=Event catalog")
    types = page.locator("article[data-event-type]")
    expect(types).to_have_count(3)
    paid = page.locator("article[data-event-type='invoice.paid']")
    expect(paid).to_contain_text("An invoice was paid in full.")
    expect(paid.locator("pre.code")).to_contain_text('"amount": 1200')
    acme.shot("10-catalog")

    # a reload keeps the session (the token is in the tab, not in the address)
    page.reload()
    expect(page.get_by_role("heading", name="Event catalog")).to_be_visible()
    expect(types).to_have_count(3)
    assert acme.errors == [], acme.errors

    # ---- globex: another owner, a read-only link
    globex = open_tab(browser, tabs, "globex")
    gpage = globex.page
    gpage.goto(seeded["globex_link"]["url"])
    expect(gpage.get_by_role("heading", name="Your endpoints")).to_be_visible()
    grows = gpage.locator("tr[data-endpoint]")
    expect(grows).to_have_count(1)
    expect(grows.first).to_contain_text("globex-main")
    expect(gpage.locator("main")).not_to_contain_text("billing hook")
    expect(gpage.locator("main")).not_to_contain_text("acme")
    expect(gpage.locator("#add-endpoint")).to_have_count(0)
    globex.shot("11-globex-endpoints")
    grows.first.locator("a").click()
    expect(gpage.get_by_role("heading", name="globex-main")).to_be_visible()
    gdelivery = gpage.locator("tr[data-delivery]")
    expect(gdelivery).to_have_count(1)
    expect(gdelivery.locator(".status")).to_have_text("Failure")
    expect(gpage.locator(".subscribed")).to_have_text("This endpoint receives every event type.")
    # no button that manages anything: only those that reveal the secret and read again
    expect(gpage.locator("form")).to_have_count(0)
    for managing in ("retry", "pause", "activate", "delete", "confirm-delete"):
        expect(gpage.locator(f"button.{managing}")).to_have_count(0)
    expect(gpage.locator("main button")).to_have_text(["Reveal", "Refresh"])
    globex.shot("12-globex-read-only")
    gdelivery.locator("a").click()
    expect(gpage.get_by_role("heading", name="Delivery of invoice.failed")).to_be_visible()
    expect(gpage.locator("article[data-attempt]")).to_have_count(2)
    expect(gpage.locator("main button")).to_have_count(0)
    globex.shot("13-globex-delivery")

    # acme's endpoint and delivery, by address: they do not exist for globex
    gpage.goto(f"{gateway.base}/portal#/endpoints/{endpoint['uid']}")
    expect(gpage.get_by_role("alert")).to_have_text("Resource not found")
    expect(gpage.locator("main")).not_to_contain_text("billing hook")
    acme_delivery = project.deliveries(endpointId=endpoint["uid"])[0]
    gpage.goto(
        f"{gateway.base}/portal#/endpoints/{endpoint['uid']}/deliveries/{acme_delivery['uid']}"
    )
    expect(gpage.get_by_role("alert")).to_have_text("Resource not found")
    expect(gpage.locator("main")).not_to_contain_text("INV-9")
    globex.shot("14-globex-not-found")
    assert globex.errors == [], globex.errors


def test_a_refused_link_says_why(browser: Browser, gateway: Gateway, tabs: dict[str, Tab]) -> None:
    project = gateway.create_project("shop")
    acme = link(project, "acme", True)
    project.ok("PUT", f"/portal-links/{acme['uid']}/revoke")
    tab = open_tab(browser, tabs, "revoked")
    tab.page.goto(acme["url"])
    expect(tab.page.get_by_role("heading", name="This link cannot be used")).to_be_visible()
    expect(tab.page.get_by_role("alert")).to_have_text(
        "authorization failed: the portal link was revoked"
    )
    assert "token" not in tab.page.url
    assert tab.page.evaluate("sessionStorage.length") == 0
    tab.shot("15-revoked-link")
    # no token at all
    tab.page.goto(gateway.base + "/portal")
    expect(tab.page.get_by_role("alert")).to_contain_text("needs the link you were given")
    assert tab.errors == [], tab.errors


def test_frame_ancestors_decide_who_embeds_the_portal(
    browser: Browser,
    gateway: Gateway,
    embedder: Receiver,
    receiver: Receiver,
    tabs: dict[str, Tab],
) -> None:
    project = gateway.create_project("shop")
    acme = link(project, "acme", False)
    app = (
        '<!doctype html><title>Provider app</title><h1>Provider app</h1><iframe src="'
        + acme["url"]
        + '" width="1100" height="700" title="Webhooks"></iframe>'
    ).encode()
    html = {"Content-Type": "text/html; charset=utf-8"}
    embedder.behave("/settings/webhooks", Behaviour(200, headers=html, body=app))
    receiver.behave("/phish", Behaviour(200, headers=html, body=app))  # another origin
    tab = open_tab(browser, tabs, "embed")
    page = tab.page

    page.goto(embedder.url + "/settings/webhooks")
    frame = page.frame_locator("iframe")
    expect(frame.get_by_role("heading", name="Your endpoints")).to_be_visible()
    expect(frame.locator("#add-endpoint")).to_have_count(0)  # a read-only link
    tab.shot("16-embedded")
    assert tab.errors == [], tab.errors

    # an origin the setting does not name: chromium refuses to show the portal there
    with page.expect_console_message(lambda m: "frame-ancestors" in m.text, timeout=WAIT_MS):
        page.goto(receiver.url + "/phish")
    expect(page.get_by_role("heading", name="Provider app")).to_be_visible()
    expect(frame.get_by_role("heading", name="Your endpoints")).to_have_count(0)
    tab.shot("17-refused-embedder")
