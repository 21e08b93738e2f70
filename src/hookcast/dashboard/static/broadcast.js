// Broadcasts: send one, list recent ones, and watch one's progress live.
import { projectApi } from "./api.js";
import { barChart, lineChart } from "./chart.js";
import { errorBox, fill, h, kv, noun, plural, table, when } from "./dom.js";
import { broadcastVerdict, eventVerdict, verdictBadge } from "./status.js";

const href = (pid, rest) => `#/p/${encodeURIComponent(pid)}/${rest}`;

// the recent broadcasts listed under the form (each one's outcome is one more request)
const LISTED = 20;

// what broadcasting needs, and the commands that grant it
function broadcastHelp(pid) {
  const code = (text) => h("code", { class: "mono" }, text);
  return h("div", { id: "broadcast-help", class: "help" },
    h("p", {}, "A broadcast goes to every endpoint of the project whose subscription matches its event type, whoever owns the endpoint."),
    h("p", {}, "Sending one needs an API key granted the ", h("strong", {}, "broadcast permission"),
      ": a key has it only if it was asked for when the key was created. Create such a key with"),
    h("pre", { class: "command" }, code(`hookcast apikey create --project ${pid} --broadcast`)),
    h("p", {}, "or, for a new project's first key, with ", code("hookcast project create NAME --broadcast"),
      ". Then sign out and sign in with that key."));
}

async function recentBroadcasts(p, pid) {
  const events = (await p.get("/events", { perPage: 100 })).content;
  const recent = events.filter((ev) => ev.kind === "broadcast").slice(0, LISTED);
  const verdicts = await Promise.all(recent.map((ev) => eventVerdict(p, ev).catch(() => null)));
  const rows = recent.map((ev, i) =>
    h("tr", { "data-broadcast": ev.uid },
      h("td", {}, h("a", { href: href(pid, `broadcasts/${ev.uid}`) }, ev.event_type)),
      h("td", { class: "mono small" }, ev.uid),
      h("td", { class: "status" }, verdicts[i] ? verdictBadge(verdicts[i]) : "—"),
      h("td", {}, when(ev.created_at))));
  return table(["Event type", "ID", "Status", "Created (UTC)"], rows, "No broadcasts among the recent events.");
}

export async function broadcasts(page) {
  const [pid] = page.params;
  const p = projectApi(pid);
  const type = h("input", { name: "event_type", required: true, placeholder: "invoice.paid" });
  const data = h("textarea", { name: "data", rows: 4, class: "mono" }, '{"hello": "world"}');
  const message = h("div");
  async function send(e) {
    e.preventDefault();
    try {
      const body = { event_type: type.value.trim(), data: JSON.parse(data.value) };
      const ev = await p.post("/events/broadcast", body);
      location.hash = href(pid, `broadcasts/${ev.uid}`);
    } catch (err) {
      fill(message, errorBox(err));
    }
  }
  const recent = await recentBroadcasts(p, pid);
  page.render(
    h("h1", {}, "Broadcasts"),
    h("form", { class: "card broadcast-form", onsubmit: send, "aria-describedby": "broadcast-help" },
      h("h2", {}, "Send a broadcast"),
      broadcastHelp(pid),
      h("label", {}, h("span", {}, "Event type"), type),
      h("label", {}, h("span", {}, "Data (JSON)"), data),
      h("button", { type: "submit", class: "primary" }, "Broadcast"),
      message),
    h("h2", {}, `Recent broadcasts (up to ${LISTED})`),
    recent,
  );
}

// finished deliveries over the deliveries the fan-out writes (matched minus skipped)
function progressOf(b) {
  const expected = b.targets_matched - b.skipped;
  const finished = b.succeeded + b.failed + (b.discarded || 0);
  const complete = b.fanout_done && b.pending === 0 && b.retrying === 0;
  if (complete) return { pct: 100, complete, finished, expected };
  const pct = expected > 0 ? Math.floor((100 * finished) / expected) : 0;
  return { pct: Math.min(pct, 99), complete, finished, expected };
}

function stat(label, value, cls = "") {
  return h("div", { class: `stat ${cls}` }, h("div", { class: "stat-value" }, value), h("div", { class: "stat-label" }, label));
}

// ---- deliveries over time, by the server's clock -------------------------------------------
//
// Each finished delivery is placed at the time the server last updated it (its last attempt),
// counted from the broadcast's publication: never the browser's clock, so the chart reads
// the same opened during the broadcast or a day later. Up to EXACT finished deliveries of a
// kind, every one is drawn (one bounded request); beyond, the succeeded line joins the times
// the progress reports (first, p50, p95, p99, last) and the failed one scales a sample.
const EXACT = 200;
const FAILED = ["Failure", "Discarded"];

// "2024-05-01T12:00:03.123456Z" -> microseconds since the epoch
function micros(iso) {
  const m = /^(.*?)(?:\.(\d+))?Z$/.exec(iso || "");
  if (!m) return NaN;
  return Date.parse(`${m[1]}Z`) * 1000 + Number((m[2] || "").padEnd(6, "0").slice(0, 6));
}

// finish times (µs) -> the cumulative count as a staircase [[seconds after t0, count], ...]
// (flat until each delivery, then one up), scaled by k
function steps(times, t0, k = 1) {
  const offsets = times.map((t) => (t - t0) / 1e6).sort((a, b) => a - b);
  return [[0, 0], ...offsets.flatMap((s, i) => [[s, i * k], [s, (i + 1) * k]])];
}

// the succeeded line through the delivery times the progress reports
function knots(b, t0) {
  const n = b.succeeded;
  const lat = b.latency_ms || {};
  const first = (micros(b.first_delivery_at) - t0) / 1e6;
  const points = [[0, 0], [first, 0], [first, 1], [(micros(b.last_delivery_at) - t0) / 1e6, n]];
  for (const [name, q] of [["p50", 0.5], ["p95", 0.95], ["p99", 0.99]]) {
    if (lat[name] !== null && lat[name] !== undefined) points.push([lat[name] / 1000, Math.min(n - 1, Math.floor(q * n)) + 1]);
  }
  return points.sort((a, c) => a[0] - c[0] || a[1] - c[1]);
}

async function finishTimes(p, eid, status) {
  const data = await p.get("/eventdeliveries", { eventId: eid, status, perPage: EXACT });
  return data.content.map((d) => micros(d.updated_at));
}

// -> {ok: points, bad: points, knotted, sampled}
async function timeline(p, eid, b, t0) {
  const failed = b.failed + (b.discarded || 0);
  const ok = !b.succeeded ? []
    : b.succeeded <= EXACT ? steps(await finishTimes(p, eid, "Success"), t0) : knots(b, t0);
  let bad = [];
  if (failed) {
    const times = await finishTimes(p, eid, FAILED);
    bad = steps(times, t0, times.length ? failed / times.length : 1);
  }
  return { ok, bad, knotted: b.succeeded > EXACT, sampled: failed > EXACT };
}

function timelineNote(line, span) {
  const took = span === null ? "" : span < 1 ? `${(span * 1000).toFixed(1)} ms` : `${span.toFixed(2)} s`;
  const notes = [span === null ? "No finished deliveries yet."
    : `From publishing to each delivery's last attempt, by the server's clock: the last ended ${took} after.`];
  if (line.knotted) notes.push(`Over ${EXACT} successes: the line joins the first, median, 95th and 99th percentile and last.`);
  if (line.sampled) notes.push(`Over ${EXACT} failures: drawn from a sample of ${EXACT}.`);
  return h("p", { class: "muted small" }, notes.join(" "));
}

function timelineChart(line, yMax) {
  const ends = [line.ok, line.bad].filter((pts) => pts.length).map((pts) => pts[pts.length - 1][0]);
  const span = ends.length ? Math.max(...ends) : null;
  const chart = lineChart([{ points: line.ok, cls: "ok" }, { points: line.bad, cls: "bad" }], {
    xMax: Math.max(span ?? 1, 0.001), yMax, yLabel: "deliveries", id: "bc-timeline",
    label: "finished deliveries over the time since publishing",
  });
  if (span !== null) chart.setAttribute("data-span-ms", (span * 1000).toFixed(3));
  return [chart,
    h("p", { class: "legend" }, h("span", { class: "key ok" }), "succeeded ", h("span", { class: "key bad" }), "failed"),
    timelineNote(line, span)];
}

// ---- one broadcast's progress -------------------------------------------------------------

function phase(b, complete) {
  if (complete) return "finished";
  return b.fanout_done ? "delivering" : "fanning out";
}

function stats(b) {
  return h("div", { class: "stats" },
    stat(noun(b.targets_matched, "target matched", "targets matched"), b.targets_matched),
    stat(noun(b.deliveries_written, "delivery written", "deliveries written"), b.deliveries_written),
    stat("succeeded", b.succeeded, "good"),
    stat("failed", b.failed, b.failed ? "bad" : ""),
    stat("retrying", b.retrying, b.retrying ? "warn" : ""),
    stat("pending", b.pending),
    stat("skipped (paused/disabled)", b.skipped),
    stat("delivered / s", b.delivery_rate_per_s ?? "—"),
  );
}

export async function broadcastProgress(page) {
  const [pid, eid] = page.params;
  const p = projectApi(pid);
  let drawn = { key: "", line: null }; // the timeline is read again only when counts change

  await page.every(1000, async () => {
    const ev = await p.get(`/events/${eid}`);
    const b = ev.broadcast;
    if (!b) {
      page.render(h("h1", {}, "Broadcast"), errorBox(new Error("This event is not a broadcast.")));
      return false;
    }
    const key = [b.succeeded, b.failed, b.discarded, b.last_delivery_at].join("/");
    if (key !== drawn.key) drawn = { key, line: await timeline(p, eid, b, micros(ev.acknowledged_at)) };
    const { pct, complete, finished, expected } = progressOf(b);
    const verdict = broadcastVerdict(b);
    const yMax = Math.max(1, b.targets_matched - b.skipped, b.succeeded + b.failed);
    const bar = h("div", { class: `fill ${verdict.tone}` });
    bar.style.width = `${pct}%`;
    const lat = b.latency_ms || {};
    page.render(
      h("h1", {}, "Broadcast ", h("span", { class: "muted" }, ev.event_type)),
      kv([
        ["Event", h("a", { href: href(pid, `events/${eid}`) }, h("span", { class: "mono" }, eid))],
        ["Created (UTC)", when(ev.created_at)],
        ["State", h("span", { id: "bc-state" }, verdictBadge(verdict), " ", h("span", { class: "muted small" }, `${phase(b, complete)}: ${verdict.detail}`))],
      ]),
      h("div", { class: "progress-head" },
        h("span", { id: "bc-pct", class: "pct" }, `${pct} %`),
        h("span", { class: "muted" }, `${finished} of ${plural(expected, "delivery", "deliveries")} finished`,
          b.fanout_done ? "" : " (the fan-out is still writing deliveries)")),
      h("div", { class: "progress", role: "progressbar", "aria-valuenow": pct, "aria-valuemin": 0, "aria-valuemax": 100 }, bar),
      stats(b),
      h("div", { class: "columns" },
        h("section", { class: "card" },
          h("h2", {}, "Deliveries over time"),
          timelineChart(drawn.line, yMax)),
        h("section", { class: "card" },
          h("h2", {}, "Latency percentiles"),
          h("p", { class: "muted small" }, "From publishing to each endpoint's first successful delivery."),
          barChart([["p50", lat.p50], ["p95", lat.p95], ["p99", lat.p99]]),
          h("p", { class: "muted small" }, `first delivery ${when(b.first_delivery_at)}, last ${when(b.last_delivery_at)} (UTC)`)),
      ),
    );
    return !complete;
  });
}
