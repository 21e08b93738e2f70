// Working on endpoints: create one, and an endpoint's own page (edit, pause or activate,
// delete, rotate its secret, its subscriptions, send it a test event, its recent
// deliveries); the subscription editor, whose filter is tried on a sample before saving.
import { projectApi } from "./api.js";
import { badge, fill, h, kv, table, when } from "./dom.js";
import {
  act, confirmed, feedback, field, form, input, jsonObject, number, parseJson, select, shownOnce, textarea,
} from "./forms.js";
import { DONE, statusBadge as status } from "./status.js";

const href = (pid, rest) => `#/p/${encodeURIComponent(pid)}/${rest}`;
const RESENDABLE = new Set(["Failure", "Discarded"]);
const RECENT = 10; // deliveries listed on an endpoint's page

// ---- the endpoint form (new and edit) ----------------------------------------------------

function endpointFields(ep = {}) {
  const num = (name, value, id) => input(name, { id, type: "number", min: 0, step: 1, inputmode: "numeric", value });
  const f = {
    name: input("name", { id: "ep-name", value: ep.name, required: true }),
    url: input("url", { id: "ep-url", type: "url", value: ep.url, required: true, placeholder: "https://example.com/webhooks" }),
    owner: input("owner_id", { id: "ep-owner", value: ep.owner_id }),
    description: textarea("description", ep.description || "", { id: "ep-description", rows: 2, class: "" }),
    rate: num("rate_limit", ep.rate_limit, "ep-rate"),
    duration: num("rate_limit_duration", ep.rate_limit_duration, "ep-rate-duration"),
    timeout: num("http_timeout", ep.http_timeout, "ep-timeout"),
    ordering: select("ordering", [["none", "none: send as soon as due"], ["per_key", "per key: one at a time, in publish order"]], ep.ordering || "none"),
    onFailure: select("ordering_on_failure", [["block", "block the key until retried or skipped"], ["skip", "skip it and go on"]], ep.ordering_on_failure || "block"),
  };
  f.ordering.id = "ep-ordering";
  f.onFailure.id = "ep-ordering-failure";
  f.nodes = [
    h("div", { class: "grid2" },
      field("Name", f.name),
      field("URL", f.url, "Where deliveries are POSTed (http or https)."),
      field("Owner ID", f.owner, "Groups a customer's endpoints: fan-out events and portal links use it."),
      field("Timeout (s)", f.timeout, "How long one attempt may take; empty keeps the default (10 s)."),
      field("Rate limit", f.rate, "Deliveries per window; 0 or empty for no limit."),
      field("Rate limit window (s)", f.duration),
      field("Ordering", f.ordering, "Per key: a key's next delivery waits until the one before it ended (the publish's ordering_key; none: one key for the endpoint)."),
      field("When an ordered delivery fails for good", f.onFailure)),
    field("Description", f.description),
  ];
  f.body = () => {
    const body = {
      name: f.name.value.trim(),
      url: f.url.value.trim(),
      owner_id: f.owner.value.trim(),
      description: f.description.value.trim(),
      rate_limit: number(f.rate, "Rate limit"),
      rate_limit_duration: number(f.duration, "Rate limit window"),
      http_timeout: number(f.timeout, "Timeout"),
      ordering: f.ordering.value,
      ordering_on_failure: f.onFailure.value,
    };
    for (const [k, v] of Object.entries(body)) if (v === null) delete body[k];
    return body;
  };
  return f;
}

export async function newEndpoint(page) {
  const [pid] = page.params;
  const p = projectApi(pid);
  const f = endpointFields();
  const box = feedback();
  page.render(
    h("h1", {}, "New endpoint"),
    form({ class: "card stack", id: "new-endpoint", "aria-label": "New endpoint" }, [
      f.nodes,
      h("div", { class: "buttons" },
        h("button", { type: "submit", class: "primary" }, "Create endpoint"),
        h("a", { class: "button", href: href(pid, "endpoints") }, "Cancel")),
    ], box, async () => {
      const ep = await p.post("/endpoints", f.body());
      location.hash = `${href(pid, `endpoints/${ep.uid}`)}?created=1`;
    }),
  );
  f.name.focus();
}

// ---- one endpoint ------------------------------------------------------------------------

function secretsList(ep) {
  const now = Date.now();
  const rows = ep.secrets.map((s, i) => {
    const expires = s.expires_at ? Date.parse(s.expires_at) : null;
    const state = expires === null
      ? badge("current", "good")
      : expires > now ? badge(`valid until ${when(s.expires_at)} UTC`, "warn") : badge("expired", "idle");
    return h("li", { "data-secret": s.uid }, h("span", { class: "mono small" }, `secret ${i + 1}`), " created ", when(s.created_at), " UTC ", state);
  });
  return h("ul", { class: "secrets" }, rows);
}

function deliveriesTable(pid, list) {
  const rows = list.map((d) =>
    h("tr", { "data-delivery": d.uid },
      h("td", {}, h("a", { href: href(pid, `deliveries/${d.uid}`) }, d.event_type || d.uid),
        h("div", { class: "muted mono small" }, d.uid)),
      h("td", { class: "status" }, status(d.status)),
      h("td", { class: "attempts" }, d.metadata.num_trials),
      h("td", {}, when(d.updated_at)),
      h("td", {}, RESENDABLE.has(d.status)
        ? h("a", { class: "button small-button", href: href(pid, `deliveries/${d.uid}`) }, "Open to retry")
        : null)));
  return table(["Event", "Status", "Attempts", "Updated (UTC)", ""], rows, "No deliveries to this endpoint yet.");
}

const orderingText = (ep) => ep.ordering === "per_key"
  ? `per key, in publish order; a delivery failed for good ${ep.ordering_on_failure === "skip" ? "is skipped" : "blocks its key"}`
  : "none";

// an ordered endpoint's blocked keys, each with the failed delivery holding it: send that
// delivery again (it goes first) or skip it (the rest of the key goes on without it)
function blockedTable(pid, p, list, box, redraw) {
  const action = (cls, label, fn) => h("button", {
    type: "button",
    class: cls,
    onclick: (e) => act(e.currentTarget, box, async () => { box.ok(await fn()); await redraw(); }),
  }, label);
  const rows = list.map((b) => h("tr", { "data-blocked-key": b.ordering_key },
    h("td", { class: "mono" }, b.ordering_key === "" ? h("span", { class: "muted" }, "(the endpoint's one key)") : b.ordering_key),
    h("td", {}, h("a", { href: href(pid, `deliveries/${b.delivery_id}`), class: "mono small" }, b.delivery_id)),
    h("td", {}, when(b.blocked_at)),
    h("td", { class: "row-actions" },
      action("retry-blocked", "Retry it", async () => {
        await p.put(`/eventdeliveries/${b.delivery_id}/resend`);
        return `Delivery ${b.delivery_id} queued again: it goes first, then the rest of its key.`;
      }),
      action("skip-blocked", "Skip it", async () => {
        await p.post(`/eventdeliveries/${b.delivery_id}/skip`);
        return `Delivery ${b.delivery_id} skipped: the rest of its key goes on.`;
      }))));
  return table(["Ordering key", "Blocked by", "Since (UTC)", ""], rows, "No blocked key: every ordering key is moving.");
}

function describeFilter(sub) {
  const types = sub.filter_config.event_types;
  const flt = sub.filter_config.filter || {};
  const parts = [];
  if (Object.keys(flt.body || {}).length) parts.push(`body ${JSON.stringify(flt.body)}`);
  if (Object.keys(flt.headers || {}).length) parts.push(`headers ${JSON.stringify(flt.headers)}`);
  return [
    h("div", {}, types.length === 0 || types.includes("*") ? "every event type" : types.join(", ")),
    parts.length ? h("div", { class: "mono small muted" }, parts.join("; ")) : null,
  ];
}

export async function endpointPage(page) {
  const [pid, eid] = page.params;
  const p = projectApi(pid);
  let ep = await p.get(`/endpoints/${eid}`);

  const head = h("div");
  const details = h("div");
  const secrets = h("div");
  const subs = h("div");
  const deliveries = h("div", { id: "endpoint-deliveries" });
  const blocked = h("div", { id: "blocked-keys" });
  const blockedBox = feedback();
  const top = feedback();
  if (page.query.get("created")) top.ok("Endpoint created. Add a subscription to choose the events it receives.");
  if (page.query.get("saved")) top.ok("Subscription saved.");

  // what changes after an action: the heading and its buttons, the details, the secrets
  async function reload() {
    ep = await p.get(`/endpoints/${eid}`);
    drawHead();
    fill(details, kv([
      ["Endpoint ID", h("span", { class: "mono" }, ep.uid)],
      ["URL", h("span", { class: "mono" }, ep.url)],
      ["Owner ID", ep.owner_id || "—"],
      ["Status", h("span", { class: "ep-status" }, status(ep.status))],
      ["Rate limit", ep.rate_limit ? `${ep.rate_limit} per ${ep.rate_limit_duration || 1} s` : "none"],
      ["Timeout", `${ep.http_timeout} s`],
      ["Ordering", h("span", { class: "ep-ordering" }, orderingText(ep))],
      ["Description", ep.description || "—"],
    ]));
    fill(secrets, secretsList(ep));
  }

  function drawHead() {
    const active = ep.status === "active";
    const toggle = h("button", {
      type: "button",
      class: active ? "pause" : "activate",
      onclick: (e) => run(e.currentTarget, async () => {
        if (active) await p.put(`/endpoints/${eid}/pause`);
        else await p.post(`/endpoints/${eid}/activate`);
        await reload();
        top.ok(active ? "Endpoint paused: its deliveries wait until it is activated." : "Endpoint activated.");
        head.querySelector(active ? "button.activate" : "button.pause")?.focus();
      }),
    }, active ? "Pause" : "Activate");
    const remove = confirmed("Delete", `Delete ${ep.name} and its subscriptions?`, "Yes, delete it", "delete",
      (yes) => run(yes, async () => {
        await p.del(`/endpoints/${eid}`);
        location.hash = `${href(pid, "endpoints")}?deleted=${encodeURIComponent(ep.name)}`;
      }));
    fill(head,
      h("h1", {}, ep.name, " ", h("span", { class: "ep-status" }, status(ep.status))),
      h("div", { class: "actions" }, toggle,
        h("a", { class: "button", href: href(pid, `events?endpointId=${ep.uid}`) }, "Events"),
        remove));
  }

  const run = (control, fn) => act(control, top, fn);

  // the edit form
  const f = endpointFields(ep);
  const editBox = feedback();
  const edit = form({ class: "card stack", id: "edit-endpoint", "aria-labelledby": "edit-endpoint-title" }, [
    h("h2", { id: "edit-endpoint-title" }, "Edit endpoint"),
    f.nodes,
    h("div", { class: "buttons" }, h("button", { type: "submit", class: "primary" }, "Save changes")),
  ], editBox, async () => {
    await p.put(`/endpoints/${eid}`, f.body());
    await reload();
    await drawBlocked();
    editBox.ok("Endpoint saved.");
  });

  // rotating the secret (Convoy's expire_secret): the old one keeps signing for a while
  const keep = select("expiration", [["3600", "1 hour"], ["86400", "1 day"], ["604800", "7 days"], ["0", "no time: expire it now"]], "3600");
  keep.id = "rotate-keep";
  const rotateBox = feedback();
  const rotate = form({ class: "card stack", id: "rotate-secret", "aria-labelledby": "rotate-title" }, [
    h("h2", { id: "rotate-title" }, "Signing secret"),
    h("p", { class: "muted" }, "Receivers verify each delivery's signature with this secret. Rotating makes a new one; the old one keeps signing too until it expires, so receivers can switch without losing a delivery."),
    secrets,
    field("Keep the old secret valid for", keep),
    h("div", { class: "buttons" }, h("button", { type: "submit", class: "primary" }, "Rotate secret")),
  ], rotateBox, async () => {
    const before = new Set(ep.secrets.map((s) => s.uid));
    const updated = await p.put(`/endpoints/${eid}/expire_secret`, { expiration: Number(keep.value) });
    const fresh = updated.secrets.find((s) => !before.has(s.uid)) || updated.secrets[updated.secrets.length - 1];
    await reload();
    rotateBox.ok(h("p", {}, "Secret rotated."), shownOnce("New signing secret", fresh.value, "new-secret"));
  });

  // its subscriptions
  async function drawSubs() {
    const list = (await p.get("/subscriptions", { endpointId: eid, perPage: 100 })).content;
    const rows = list.map((s) => h("tr", { "data-subscription": s.uid },
      h("td", {}, h("a", { href: href(pid, `subscriptions/${s.uid}`) }, s.name)),
      h("td", { class: "filter" }, describeFilter(s)),
      h("td", {}, s.status === "active" ? badge("active", "good") : badge(s.status, "idle")),
      h("td", { class: "row-actions" },
        h("a", { class: "button", href: href(pid, `subscriptions/${s.uid}`) }, "Edit"),
        confirmed("Delete", `Delete subscription ${s.name}?`, "Yes, delete it", "delete-subscription",
          (yes) => run(yes, async () => {
            await p.del(`/subscriptions/${s.uid}`);
            await drawSubs();
            top.ok(`Subscription ${s.name} deleted.`);
          })))));
    fill(subs,
      h("div", { class: "section-head" },
        h("h2", {}, "Subscriptions"),
        h("a", { class: "button primary-link new-subscription", href: `${href(pid, "subscriptions/new")}?endpointId=${eid}` }, "New subscription")),
      list.length ? table(["Name", "Filter", "Status", ""], rows)
        : h("p", { class: "muted empty" }, "No subscription yet: an event sent to this endpoint subscribes it to every event type."));
  }

  // a test event, to this endpoint
  const type = input("event_type", { id: "test-type", value: "test.event", required: true });
  const data = textarea("data", '{\n  "hello": "world"\n}', { id: "test-data", rows: 4 });
  const sendBox = feedback();
  const send = form({ class: "card stack", id: "send-test", "aria-labelledby": "send-title" }, [
    h("h2", { id: "send-title" }, "Send a test event"),
    h("div", { class: "grid2" },
      field("Event type", type, "It reaches this endpoint if one of its subscriptions matches."),
      field("Data (JSON)", data)),
    h("div", { class: "buttons" }, h("button", { type: "submit", class: "primary" }, "Send event")),
  ], sendBox, async () => {
    const body = { endpoint_id: eid, event_type: type.value.trim(), data: parseJson(data.value, "Data") };
    const ev = await p.post("/events", body);
    const link = h("a", { href: href(pid, `events/${ev.uid}`) }, ev.uid);
    sendBox.ok(ev.deliveries
      ? h("span", {}, `Event sent: ${ev.deliveries === 1 ? "1 delivery" : `${ev.deliveries} deliveries`} queued (`, link, ").")
      : h("span", {}, "Event stored, but no subscription of this endpoint matches it: nothing will be sent (", link, ")."));
    await drawSubs(); // an event to an endpoint without one subscribes it to everything
    page.wake();
  });

  // shown for an ordered endpoint (or one with keys still blocked from when it was)
  let blockedCount = 0;
  let blockedShown = null; // drawn again only when it changed (the keyboard focus stays)
  async function drawBlocked() {
    const list = await p.get(`/endpoints/${eid}/ordering/blocked`);
    blockedCount = list.length;
    const drawn = JSON.stringify([ep.ordering, list]);
    if (drawn === blockedShown) return;
    blockedShown = drawn;
    if (!list.length && ep.ordering !== "per_key") return fill(blocked);
    fill(blocked,
      h("div", { class: "section-head" }, h("h2", {}, "Blocked ordering keys ", list.length ? badge(String(list.length), "bad") : null)),
      blockedBox.el,
      blockedTable(pid, p, list, blockedBox, async () => { await drawBlocked(); page.wake(); }));
  }

  await reload();
  await drawSubs();
  page.render(
    head,
    top.el,
    details,
    subs,
    blocked,
    h("div", { class: "section-head" }, h("h2", {}, `Recent deliveries (last ${RECENT})`)),
    deliveries,
    send,
    rotate,
    edit,
  );
  await page.loop(async () => {
    try {
      const list = (await p.get("/eventdeliveries", { endpointId: eid, perPage: RECENT })).content;
      fill(deliveries, deliveriesTable(pid, list));
      // a button being pressed keeps its panel (and the keyboard focus) until it is done
      if (!blocked.querySelector("[aria-disabled=true]")) await drawBlocked();
      return list.some((d) => !DONE.has(d.status)) || blockedCount ? 1000 : 5000;
    } catch (err) {
      fill(deliveries, h("p", { class: "error", role: "alert" }, err.message));
      return 10000;
    }
  });
}

// ---- the subscription editor ---------------------------------------------------------------

const pretty = (value) => JSON.stringify(value || {}, null, 2);
const typesOf = (text) => text.split(",").map((t) => t.trim()).filter(Boolean);

export async function subscriptionEditor(page) {
  const [pid, sid] = page.params;
  const p = projectApi(pid);
  const creating = sid === undefined;
  const [sub, eps] = await Promise.all([
    creating ? null : p.get(`/subscriptions/${sid}`),
    p.get("/endpoints", { perPage: 100 }),
  ]);
  const endpointId = sub ? sub.endpoint_id : page.query.get("endpointId") || "";
  const fc = sub?.filter_config || { event_types: [], filter: {} };
  const types = (fc.event_types || []).filter((t) => t !== "*");

  const name = input("name", { id: "sub-name", value: sub?.name || "", required: true });
  const endpoint = select("endpoint_id", eps.content.map((ep) => [ep.uid, `${ep.name} (${ep.url})`]), endpointId);
  endpoint.id = "sub-endpoint";
  const eventTypes = input("event_types", { id: "sub-types", value: types.join(", "), placeholder: "invoice.paid, invoice.*" });
  const bodyFilter = textarea("body_filter", pretty(fc.filter?.body), { id: "sub-body" });
  const headerFilter = textarea("header_filter", pretty(fc.filter?.headers), { id: "sub-headers", rows: 2 });
  const sampleType = input("sample_type", { id: "sample-type", value: types[0] || "", placeholder: "invoice.paid" });
  const sampleBody = textarea("sample_body", "{}", { id: "sample-body", rows: 5 });
  const sampleHeaders = textarea("sample_headers", "{}", { id: "sample-headers", rows: 2 });
  const verdict = h("div", { class: "verdict", id: "filter-verdict", role: "status", "aria-live": "polite" });
  const testBox = feedback();

  function filterConfig() {
    return {
      event_types: typesOf(eventTypes.value),
      filter: { body: jsonObject(bodyFilter.value, "Body filter"), headers: jsonObject(headerFilter.value, "Header filter") },
    };
  }

  function tryFilter(button) {
    fill(verdict);
    return act(button, testBox, async () => {
      const config = filterConfig();
      const body = {
        event_types: config.event_types.length ? config.event_types : ["*"],
        schema: config.filter,
        request: { body: parseJson(sampleBody.value, "Sample body", {}), headers: jsonObject(sampleHeaders.value, "Sample headers") },
      };
      const sample = sampleType.value.trim();
      if (sample) body.event_type = sample;
      const matched = await p.post("/subscriptions/test_filter", body);
      fill(verdict, matched
        ? [badge("Match", "good"), " this sample would be delivered."]
        : [badge("No match", "bad"), " this sample would not be delivered."]);
    });
  }

  const box = feedback();
  page.render(
    h("p", { class: "back" }, endpointId ? h("a", { href: href(pid, `endpoints/${endpointId}`) }, "← Back to the endpoint") : null),
    h("h1", {}, creating ? "New subscription" : `Subscription ${sub.name}`),
    form({ class: "card stack", id: "subscription-form", "aria-label": creating ? "New subscription" : "Edit subscription" }, [
      h("div", { class: "grid2" }, field("Name", name), field("Endpoint", endpoint)),
      h("fieldset", {},
        h("legend", {}, "Filter"),
        field("Event types", eventTypes, "Comma-separated; a name ending in .* takes the whole family; empty for every type."),
        h("div", { class: "grid2" },
          field("Body filter (JSON)", bodyFilter, 'Matched against the event\'s data, e.g. {"amount": {"$gte": 100}}. {} matches any.'),
          field("Header filter (JSON)", headerFilter, 'e.g. {"x-region": "eu"}. {} matches any.'))),
      h("fieldset", { class: "sample" },
        h("legend", {}, "Try it on a sample"),
        h("div", { class: "grid2" },
          field("Sample event type", sampleType),
          field("Sample headers (JSON)", sampleHeaders)),
        field("Sample payload (JSON data)", sampleBody, "Paste an event's data as your producer sends it."),
        h("div", { class: "buttons" },
          h("button", { type: "button", class: "test-filter", onclick: (e) => tryFilter(e.currentTarget) }, "Test filter"),
          verdict),
        testBox.el),
      h("div", { class: "buttons" }, h("button", { type: "submit", class: "primary" }, creating ? "Create subscription" : "Save subscription")),
    ], box, async () => {
      const body = { name: name.value.trim(), endpoint_id: endpoint.value, filter_config: filterConfig() };
      if (creating) await p.post("/subscriptions", body);
      else await p.put(`/subscriptions/${sid}`, body);
      location.hash = `${href(pid, `endpoints/${endpoint.value}`)}?saved=1`;
    }),
  );
  name.focus();
}

