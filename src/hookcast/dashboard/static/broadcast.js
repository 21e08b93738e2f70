// Broadcasts: send one, list recent ones, and watch one's progress live.
import { projectApi } from "./api.js";
import { lineChart, barChart } from "./chart.js";
import { badge, errorBox, h, kv, table, when } from "./dom.js";

const href = (pid, rest) => `#/p/${encodeURIComponent(pid)}/${rest}`;

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
      message.replaceChildren(errorBox(err));
    }
  }
  const recent = (await p.get("/events", { perPage: 100 })).content.filter((ev) => ev.kind === "broadcast");
  page.render(
    h("h1", {}, "Broadcasts"),
    h("form", { class: "card broadcast-form", onsubmit: send },
      h("h2", {}, "Send a broadcast"),
      h("p", { class: "muted" }, "To every endpoint of the project whose subscription matches. The key needs the broadcast grant."),
      h("label", {}, h("span", {}, "Event type"), type),
      h("label", {}, h("span", {}, "Data (JSON)"), data),
      h("button", { type: "submit", class: "primary" }, "Broadcast"),
      message),
    h("h2", {}, "Recent broadcasts"),
    table(["Event type", "ID", "Status", "Created (UTC)"], recent.map((ev) =>
      h("tr", {},
        h("td", {}, h("a", { href: href(pid, `broadcasts/${ev.uid}`) }, ev.event_type)),
        h("td", { class: "mono small" }, ev.uid),
        h("td", {}, badge(ev.status, ev.status === "Success" ? "good" : "info")),
        h("td", {}, when(ev.created_at)))), "No broadcasts among the recent events."),
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

export async function broadcastProgress(page) {
  const [pid, eid] = page.params;
  const p = projectApi(pid);
  const series = []; // [ms since epoch, succeeded, failed], one per poll

  await page.every(1000, async () => {
    const ev = await p.get(`/events/${eid}`);
    const b = ev.broadcast;
    if (!b) {
      page.render(h("h1", {}, "Broadcast"), errorBox(new Error("This event is not a broadcast.")));
      return false;
    }
    const now = Date.now();
    if (!series.length && b.succeeded > 0 && b.first_delivery_at) {
      // opened late: start the line where the first delivery happened
      series.push([Math.min(Date.parse(b.first_delivery_at), now), 0, 0]);
    }
    series.push([now, b.succeeded, b.failed]);
    const { pct, complete, finished, expected } = progressOf(b);
    const t0 = series[0][0];
    const xMax = Math.max(5, (now - t0) / 1000);
    const yMax = Math.max(1, b.targets_matched - b.skipped, b.succeeded + b.failed);
    const bar = h("div", { class: `fill ${complete ? "done" : ""}` });
    bar.style.width = `${pct}%`;
    const lat = b.latency_ms || {};
    page.render(
      h("h1", {}, "Broadcast ", h("span", { class: "muted" }, ev.event_type)),
      kv([
        ["Event", h("a", { href: href(pid, `events/${eid}`) }, h("span", { class: "mono" }, eid))],
        ["Created (UTC)", when(ev.created_at)],
        ["State", complete ? badge("complete", "good") : b.fanout_done ? badge("delivering", "info") : badge("fanning out", "info")],
      ]),
      h("div", { class: "progress-head" },
        h("span", { id: "bc-pct", class: "pct" }, `${pct} %`),
        h("span", { class: "muted" }, `${finished} of ${expected} deliveries finished`,
          b.fanout_done ? "" : " (the fan-out is still writing deliveries)")),
      h("div", { class: "progress", role: "progressbar", "aria-valuenow": pct, "aria-valuemin": 0, "aria-valuemax": 100 }, bar),
      h("div", { class: "stats" },
        stat("targets matched", b.targets_matched),
        stat("deliveries written", b.deliveries_written),
        stat("succeeded", b.succeeded, "good"),
        stat("failed", b.failed, b.failed ? "bad" : ""),
        stat("retrying", b.retrying, b.retrying ? "warn" : ""),
        stat("pending", b.pending),
        stat("skipped (paused/disabled)", b.skipped),
        stat("deliveries / s", b.delivery_rate_per_s ?? "—"),
      ),
      h("div", { class: "columns" },
        h("section", { class: "card" },
          h("h2", {}, "Deliveries over time"),
          lineChart([
            { points: series.map(([t, ok]) => [(t - t0) / 1000, ok]), cls: "ok" },
            { points: b.failed ? series.map(([t, , bad]) => [(t - t0) / 1000, bad]) : [], cls: "bad" },
          ], { xMax, yMax, yLabel: "deliveries" }),
          h("p", { class: "legend" }, h("span", { class: "key ok" }), "succeeded ", h("span", { class: "key bad" }), "failed")),
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
