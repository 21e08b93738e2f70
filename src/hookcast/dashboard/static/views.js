// Project pages: endpoints, events (search and filters), an event's deliveries, a delivery's
// attempts; resend and retry.
import { projectApi } from "./api.js";
import { badge, errorBox, fill, h, json, kv, table, when } from "./dom.js";
import { act, feedback } from "./forms.js";
import {
  DONE, countStatuses, detail, eventVerdict, health, listVerdict, rateTone, statusBadge as status,
  summarize, verdictBadge,
} from "./status.js";

const RESENDABLE = new Set(["Failure", "Discarded"]);
const href = (pid, rest) => `#/p/${encodeURIComponent(pid)}/${rest}`;

// ---- endpoints ------------------------------------------------------------------------

// The endpoint object carries the breaker (its window is kept while it is open or half
// open); the success rate comes from the project's recent deliveries, whatever their status
// (status.js: retrying counts as failed so far).
const RECENT = 500;

// deliveries -> Map(endpoint id -> their counts by status)
function byEndpoint(deliveries) {
  const groups = new Map();
  for (const d of deliveries) {
    if (!groups.has(d.endpoint_id)) groups.set(d.endpoint_id, []);
    groups.get(d.endpoint_id).push(d);
  }
  return new Map([...groups].map(([id, list]) => [id, countStatuses(list)]));
}

function breaker(ep) {
  const cb = ep.circuit_breaker || { state: "closed" };
  return [
    status(cb.state),
    cb.requests ? h("div", { class: "muted small" }, `${cb.failures} of ${cb.requests} failed`) : null,
  ];
}

function successRate(counts) {
  const s = summarize(counts);
  if (!s.total) return h("span", { class: "muted" }, "no recent deliveries");
  if (!s.judged) return h("span", { class: "muted" }, detail(s));
  const pct = (100 * s.ok) / s.judged;
  const part = h("span", { class: rateTone(s) });
  part.style.width = `${pct}%`;
  return h("div", { class: "rate" }, `${pct.toFixed(1)} %`, h("span", { class: "meter" }, part),
    h("small", { class: "muted" }, detail(s)));
}

export async function endpoints(page) {
  const [pid] = page.params;
  const p = projectApi(pid);
  const deleted = page.query.get("deleted");
  const notice = feedback();
  if (deleted) notice.ok(`Endpoint ${deleted} deleted.`);
  let shown = ""; // what is on screen: drawn again only when it changed (the focus stays)
  await page.every(10000, async () => {
    const [data, recent] = await Promise.all([
      p.get("/endpoints", { perPage: 100, q: page.query.get("q") }),
      p.get("/eventdeliveries", { perPage: RECENT }),
    ]);
    const drawn = JSON.stringify([data.content, recent.content.map((d) => [d.endpoint_id, d.status])]);
    if (drawn === shown) return;
    shown = drawn;
    const counts = byEndpoint(recent.content);
    const rows = data.content.map((ep) =>
      h("tr", { "data-endpoint": ep.uid },
        h("td", {}, h("a", { href: href(pid, `endpoints/${ep.uid}`) }, h("strong", {}, ep.name)),
          h("div", { class: "muted mono small" }, ep.url)),
        h("td", {}, ep.owner_id || "—"),
        h("td", {}, status(ep.status), ep.disabled_reason ? h("div", { class: "muted small" }, ep.disabled_reason) : null),
        h("td", { class: "health" }, verdictBadge(health(ep, counts.get(ep.uid) || {}))),
        h("td", { class: "breaker" }, breaker(ep)),
        h("td", { class: "success" }, successRate(counts.get(ep.uid) || {})),
        h("td", {}, h("a", { href: href(pid, `events?endpointId=${ep.uid}`) }, "Events")),
      ));
    page.render(
      h("div", { class: "section-head" }, h("h1", {}, "Endpoints"),
        h("a", { class: "button primary-link new-endpoint", href: href(pid, "endpoints/new") }, "New endpoint")),
      notice.el,
      h("p", { class: "muted" },
        `Health from the status, the circuit breaker and the success rate of the project's last ${RECENT} deliveries (one waiting for a retry counts as failed so far); refreshed every 10 s.`),
      table(["Endpoint", "Owner", "Status", "Health", "Breaker", "Success rate", ""], rows, "No endpoints yet."),
    );
  });
}

// ---- events -----------------------------------------------------------------------------

// a datetime-local value -> the API's 2006-01-02T15:04:05 (UTC)
const apiDate = (v) => (v && v.length === 16 ? `${v}:00` : v || "");

function pager(pagination, query) {
  const link = (text, changes) => {
    const q = new URLSearchParams(query);
    for (const name of ["next_page_cursor", "prev_page_cursor", "direction"]) q.delete(name);
    for (const [name, value] of Object.entries(changes)) q.set(name, value);
    return h("a", { class: "button", href: `${location.hash.split("?")[0]}?${q}` }, text);
  };
  return h("div", { class: "pager" },
    pagination.has_prev_page ? link("← Newer", { direction: "prev", prev_page_cursor: pagination.prev_page_cursor }) : null,
    pagination.has_next_page ? link("Older →", { direction: "next", next_page_cursor: pagination.next_page_cursor }) : null,
  );
}

// an event's outcome from its deliveries (status.js), not its stored status (which says only
// that it was accepted and routed)
function verdictCell(v) {
  if (!v) return h("span", { class: "muted" }, "—");
  return [verdictBadge(v), h("div", { class: "muted small" }, v.detail)];
}

export async function events(page) {
  const [pid] = page.params;
  const p = projectApi(pid);
  const q = page.query;
  const eps = await p.get("/endpoints", { perPage: 100 });
  let data = null;
  let problem = null; // a filter the API refuses is shown under the form
  try {
    data = await p.get("/events", {
      perPage: 25, query: q.get("query"), endpointId: q.get("endpointId"),
      startDate: q.get("startDate"), endDate: q.get("endDate"), direction: q.get("direction"),
      next_page_cursor: q.get("next_page_cursor"), prev_page_cursor: q.get("prev_page_cursor"),
    });
  } catch (err) {
    if (err.status !== 400) throw err;
    problem = errorBox(err);
  }
  const field = (label, control) => h("label", {}, h("span", {}, label), control);
  const search = h("input", { name: "query", type: "search", value: q.get("query"), placeholder: "exact event type, event ID or idempotency key" });
  const endpoint = h("select", { name: "endpointId" }, h("option", { value: "" }, "all endpoints"),
    eps.content.map((ep) => h("option", { value: ep.uid, selected: ep.uid === q.get("endpointId") }, ep.name)));
  const start = h("input", { name: "startDate", type: "datetime-local", step: 1, value: q.get("startDate") });
  const end = h("input", { name: "endDate", type: "datetime-local", step: 1, value: q.get("endDate") });
  const filters = h("form", {
    class: "filters",
    onsubmit(e) {
      e.preventDefault();
      const next = new URLSearchParams();
      for (const [name, value] of [["query", search.value.trim()], ["endpointId", endpoint.value],
        ["startDate", apiDate(start.value)], ["endDate", apiDate(end.value)]]) {
        if (value) next.set(name, value);
      }
      location.hash = `${href(pid, "events")}?${next}`;
    },
  },
  field("Search", search), field("Endpoint", endpoint), field("From (UTC)", start), field("To (UTC)", end),
  h("button", { type: "submit", class: "primary" }, "Filter"),
  h("a", { class: "button", href: href(pid, "events") }, "Clear"));

  const list = data?.content || [];
  const verdicts = await Promise.all(list.map((ev) => eventVerdict(p, ev).catch(() => null)));
  const rows = list.map((ev, i) =>
    h("tr", { "data-event": ev.uid },
      h("td", {}, h("a", { href: href(pid, `events/${ev.uid}`) }, ev.event_type)),
      h("td", { class: "mono small" }, ev.uid),
      h("td", {}, ev.kind === "broadcast"
        ? h("a", { href: href(pid, `broadcasts/${ev.uid}`) }, badge("broadcast", "info"))
        : ev.kind),
      h("td", { class: "status" }, verdictCell(verdicts[i])),
      h("td", {}, when(ev.created_at)),
    ));
  page.render(
    h("h1", {}, "Events"),
    filters,
    problem || table(["Event type", "ID", "Kind", "Status", "Created (UTC)"], rows, "No events match."),
    data ? pager(data.pagination, q) : null,
  );
}

// ---- one event and its deliveries ---------------------------------------------------------

// poll quickly while a delivery is in flight, slowly otherwise; actions wake the page up
const pace = (busy) => (busy ? 1000 : 10000);

// an action button whose outcome (the API's message) or refusal is said in box
function actionButton(cls, label, title, box, page, fn) {
  return h("button", {
    type: "button",
    class: cls,
    title,
    async onclick(e) {
      await act(e.currentTarget, box, async () => box.ok(await fn()));
      page.wake();
    },
  }, label);
}

// retry one failed delivery now (Convoy's resend)
function resendButton(p, d, page, box) {
  if (!RESENDABLE.has(d.status)) return null;
  return actionButton("resend", "Retry", "Send this failed delivery again now", box, page, async () => {
    await p.put(`/eventdeliveries/${d.uid}/resend`);
    return `Delivery ${d.uid} queued for another try.`;
  });
}

// let the ordering key a failed delivery blocks go on without it (the API says when it
// blocks nothing)
function skipButton(p, d, page, box) {
  if (d.status !== "Failure" || d.ordering_key === null || d.ordering_key === undefined) return null;
  return actionButton("skip", "Skip", "Let the rest of its ordering key go on without this delivery", box, page,
    async () => `${(await p.send("POST", `/eventdeliveries/${d.uid}/skip`)).message}.`);
}

// send a successful delivery again (Convoy's forceresend)
function forceResendButton(p, d, page, box) {
  if (d.status !== "Success") return null;
  return actionButton("force-resend", "Force resend", "Send this delivery again although it succeeded", box, page,
    async () => `Force resend: ${(await p.send("POST", "/eventdeliveries/forceresend", { ids: [d.uid] })).message}.`);
}

// send the event again to every endpoint it went to (its finished deliveries requeued)
function replayButton(p, eventId, page, box) {
  return actionButton("replay", "Replay event", "Send the event again to every endpoint it went to", box, page,
    async () => `${(await p.send("PUT", `/events/${eventId}/replay`)).message}: its finished deliveries are queued again.`);
}

function deliveryRow(pid, p, d, names, page, box) {
  return h("tr", { "data-delivery": d.uid },
    h("td", {}, h("a", { href: href(pid, `deliveries/${d.uid}`), class: "mono small" }, d.uid)),
    h("td", {}, names.get(d.endpoint_id) || d.endpoint_id),
    h("td", { class: "status" }, status(d.status), d.held ? badge("held", "warn") : null),
    h("td", {}, d.metadata.num_trials),
    h("td", {}, d.latency_seconds ? `${(d.latency_seconds * 1000).toFixed(1)} ms` : "—"),
    h("td", {}, when(d.updated_at)),
    h("td", {}, resendButton(p, d, page, box)),
  );
}

async function endpointNames(p) {
  const eps = await p.get("/endpoints", { perPage: 100 });
  return new Map(eps.content.map((ep) => [ep.uid, ep.name]));
}

export async function event(page) {
  const [pid, eid] = page.params;
  const p = projectApi(pid);
  const [ev, names] = await Promise.all([p.get(`/events/${eid}`), endpointNames(p)]);
  const jobBox = h("div", { class: "job" });
  const box = feedback();
  const replay = replayButton(p, eid, page, box);
  let shown = ""; // what is on screen: drawn again only when it changed (the focus stays)

  async function retryFailed(e) {
    e.target.disabled = true;
    try {
      const job = await p.post("/eventdeliveries/batchretry", undefined, { status: "Failure", eventId: eid });
      await page.every(500, async () => {
        const j = await p.get(`/batch-jobs/${job.uid}`);
        fill(jobBox, `Batch retry ${j.status}: ${j.processed} of ${j.total} processed, ${j.requeued} requeued.`);
        return j.status === "queued" || j.status === "running";
      });
    } catch (err) {
      fill(jobBox, errorBox(err));
    }
    page.wake();
  }

  await page.loop(async () => {
    const data = await p.get("/eventdeliveries", { eventId: eid, perPage: 100 });
    const list = data.content;
    const failed = list.some((d) => d.status === "Failure");
    const verdict = ev.kind === "broadcast" ? await eventVerdict(p, ev) : listVerdict(data);
    const drawn = JSON.stringify([list, verdict]);
    if (drawn === shown) return pace(list.some((d) => !DONE.has(d.status)));
    shown = drawn;
    page.render(
      h("h1", {}, ev.event_type, " ", h("span", { class: "outcome" }, verdictBadge(verdict))),
      kv([
        ["Event ID", h("span", { class: "mono" }, ev.uid)],
        ["Kind", ev.kind === "broadcast"
          ? h("a", { href: href(pid, `broadcasts/${eid}`) }, "broadcast: live progress →") : ev.kind],
        ["Outcome", verdict.detail],
        ["Created (UTC)", when(ev.created_at)],
        ["Idempotency key", ev.idempotency_key || "—"],
      ]),
      ev.kind === "broadcast" ? null : h("div", { class: "actions" }, replay),
      box.el,
      h("h2", {}, "Payload"),
      json(ev.data),
      h("div", { class: "section-head" },
        h("h2", {}, `Deliveries (${list.length}${data.pagination.has_next_page ? "+" : ""})`),
        failed ? h("button", { class: "retry", onclick: retryFailed }, "Retry failed deliveries") : null),
      jobBox,
      table(["Delivery", "Endpoint", "Status", "Attempts", "Latency", "Updated (UTC)", ""],
        list.map((d) => deliveryRow(pid, p, d, names, page, box)), "No deliveries."),
    );
    return pace(list.some((d) => !DONE.has(d.status)));
  });
}

// ---- one delivery and its attempts ----------------------------------------------------------

function headerTable(headers) {
  const entries = Object.entries(headers || {});
  if (!entries.length) return h("p", { class: "muted" }, "none");
  return h("table", { class: "headers" }, h("tbody", {}, entries.map(([name, value]) =>
    h("tr", {}, h("th", {}, name), h("td", { class: "mono" }, Array.isArray(value) ? value.join(", ") : value)))));
}

function pretty(text) {
  try {
    return JSON.stringify(JSON.parse(text), null, 2);
  } catch {
    return text;
  }
}

function attemptDetail(a) {
  return h("section", { class: "attempt", id: "attempt-detail" },
    h("h2", {}, "Attempt ", h("span", { class: "mono" }, a.uid)),
    kv([
      ["Result", a.status ? badge("succeeded", "good") : badge("failed", "bad")],
      ["Request", h("span", { class: "mono" }, `${a.method} ${a.url}`)],
      ["IP address", a.ip_address || "—"],
      ["Requested (UTC)", when(a.requested_at)],
      ["Responded (UTC)", when(a.responded_at)],
      ["HTTP status", a.http_status || "—"],
      ["Error", a.error ? h("span", { class: "error-text" }, a.error) : "—"],
    ]),
    h("div", { class: "columns" },
      h("div", {}, h("h3", {}, "Request headers"), headerTable(a.request_http_header)),
      h("div", {}, h("h3", {}, "Response headers"), headerTable(a.response_http_header))),
    h("h3", {}, "Response body"),
    h("pre", { class: "code response-body" }, a.response_data ? pretty(a.response_data) : "(empty)"),
  );
}

export async function delivery(page) {
  const [pid, did] = page.params;
  const p = projectApi(pid);
  const names = await endpointNames(p);
  let selected = null; // the attempt whose request and response are shown
  const box = feedback();
  let shown = ""; // what is on screen: drawn again only when it changed (the focus stays)

  await page.loop(async () => {
    const [d, attempts] = await Promise.all([
      p.get(`/eventdeliveries/${did}`),
      p.get(`/eventdeliveries/${did}/deliveryattempts`),
    ]);
    const drawn = JSON.stringify([d, attempts]);
    if (drawn === shown) return pace(!DONE.has(d.status));
    shown = drawn;
    const draw = () => {
      const rows = attempts.map((a, i) =>
        h("tr", {
          class: a.uid === selected ? "clickable selected" : "clickable",
          "data-attempt": a.uid,
          onclick() { selected = a.uid; draw(); },
        },
        h("td", {}, i + 1),
        h("td", {}, when(a.requested_at)),
        h("td", {}, badge(a.http_status || (a.status ? "ok" : "no response"), a.status ? "good" : "bad")),
        h("td", { class: "small" }, a.error || "—"),
        h("td", {}, h("button", { class: "link" }, "View"))));
      const shown = attempts.find((a) => a.uid === selected);
      page.render(
        h("h1", {}, "Delivery ", h("span", { class: "mono" }, d.uid)),
        h("div", { class: "actions" }, h("span", { class: "status" }, status(d.status)),
          resendButton(p, d, page, box), skipButton(p, d, page, box), forceResendButton(p, d, page, box),
          replayButton(p, d.event_id, page, box)),
        box.el,
        kv([
          ["Event", h("a", { href: href(pid, `events/${d.event_id}`) }, `${d.event_type} (${d.event_id})`)],
          ["Endpoint", names.get(d.endpoint_id) || d.endpoint_id],
          ["Attempts", `${d.metadata.num_trials} of ${d.metadata.retry_limit}`],
          ["Next send (UTC)", DONE.has(d.status) ? "—" : when(d.metadata.next_send_time)],
          ["Latency", d.latency_seconds ? `${(d.latency_seconds * 1000).toFixed(1)} ms` : "—"],
          ["Ordering key", d.ordering_key === null || d.ordering_key === undefined ? "— (unordered)"
            : d.ordering_key === "" ? "the endpoint's one key" : h("span", { class: "mono" }, d.ordering_key)],
          ["Description", d.description || "—"],
        ]),
        h("h2", {}, "Attempts"),
        table(["#", "Requested (UTC)", "Response", "Error", ""], rows, "No attempts yet."),
        shown ? attemptDetail(shown) : null,
      );
    };
    draw();
    return pace(!DONE.has(d.status));
  });
}
