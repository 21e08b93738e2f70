// One rule for every status the dashboard derives from deliveries, so that its pages agree:
// an event's outcome (single, fan-out or broadcast) and an endpoint's health.
//
// A delivery has succeeded (Success), failed (Failure, Discarded), is retrying (Retry: its
// last try failed and another is due) or waiting (Scheduled, Processing). A retrying
// delivery counts as failed so far; a waiting one is not judged yet. Anything retrying or
// waiting keeps an event in progress; an event is green only when every delivery succeeded.
import { badge, plural } from "./dom.js";

// the colour of each status the API reports, deliveries' and endpoints' alike
export const TONE = {
  Success: "good", Failure: "bad", Retry: "warn", Scheduled: "info", Processing: "info",
  Pending: "info", Discarded: "idle", active: "good", paused: "warn", inactive: "bad",
  closed: "good", open: "bad", half_open: "warn",
};
export const DONE = new Set(["Success", "Failure", "Discarded"]);

// an endpoint's success rate (retrying counted as failed) that is healthy, or degraded
const HEALTHY = 0.95;
const DEGRADED = 0.5;

export const statusBadge = (s) => badge(s, TONE[s] || "idle");

// deliveries -> {Success: 3, Retry: 1, ...}
export function countStatuses(deliveries) {
  const counts = {};
  for (const d of deliveries) counts[d.status] = (counts[d.status] || 0) + 1;
  return counts;
}

// a broadcast's progress (GET /events/{id}: data.broadcast) -> the same counts
export function progressCounts(b) {
  return {
    Success: b.succeeded, Failure: b.failed, Discarded: b.discarded || 0,
    Retry: b.retrying, Scheduled: b.pending,
  };
}

export function summarize(counts) {
  const n = (status) => counts[status] || 0;
  const ok = n("Success");
  const failed = n("Failure") + n("Discarded");
  const retrying = n("Retry");
  const waiting = n("Scheduled") + n("Processing");
  return { ok, failed, retrying, waiting, judged: ok + failed + retrying, total: ok + failed + retrying + waiting };
}

// "3 of 4 succeeded, 1 retrying" (no nouns: right for 1 as for 2)
export function detail(s) {
  if (!s.total) return "no deliveries";
  const parts = [`${s.ok} of ${s.total} succeeded`];
  for (const [n, what] of [[s.failed, "failed"], [s.retrying, "retrying"], [s.waiting, "waiting"]]) {
    if (n) parts.push(`${n} ${what}`);
  }
  return parts.join(", ");
}

// an event's outcome from its deliveries' counts; open: more deliveries may still be written
// (a broadcast whose fan-out is running). -> {label, tone, detail}
export function outcome(counts, { open = false } = {}) {
  const s = summarize(counts);
  const result = (label, tone) => ({ label, tone, detail: detail(s) });
  if (open || s.waiting || s.retrying) return result("In progress", s.failed || s.retrying ? "warn" : "info");
  if (!s.total) return result("No deliveries", "idle");
  if (!s.failed) return result("Success", "good");
  return s.ok ? result("Partial failure", "warn") : result("Failure", "bad");
}

// a broadcast's outcome from its progress: in progress until its fan-out is done
export function broadcastVerdict(b) {
  return outcome(progressCounts(b), { open: !b.fanout_done });
}

// a page of an event's deliveries -> its outcome (from the first page only, which it says)
export function listVerdict(data) {
  const v = outcome(countStatuses(data.content));
  return data.pagination.has_next_page ? { ...v, detail: `${v.detail} (first ${plural(data.content.length, "delivery", "deliveries")})` } : v;
}

// an event's outcome, read from the API (p: projectApi): a broadcast's from its progress
// (exact however many deliveries it has), another's from its first 100 deliveries
export async function eventVerdict(p, ev) {
  if (ev.kind !== "broadcast") return listVerdict(await p.get("/eventdeliveries", { eventId: ev.uid, perPage: 100 }));
  const { broadcast } = await p.get(`/events/${encodeURIComponent(ev.uid)}`);
  return broadcast ? broadcastVerdict(broadcast) : outcome({});
}

// the tone of a success rate: idle when nothing is judged yet
export function rateTone(s) {
  if (!s.judged) return "idle";
  const rate = s.ok / s.judged;
  return rate >= HEALTHY ? "good" : rate >= DEGRADED ? "warn" : "bad";
}

const HEALTH = { good: "healthy", warn: "degraded", bad: "failing", idle: "idle" };

// an endpoint's health: its status, then its breaker, then its recent deliveries' rate
export function health(ep, counts) {
  const state = ep.circuit_breaker?.state;
  if (ep.status !== "active") return { label: ep.status === "paused" ? "paused" : "disabled", tone: "bad" };
  if (state === "open") return { label: "down", tone: "bad" };
  if (state === "half_open") return { label: "recovering", tone: "warn" };
  const s = summarize(counts);
  if (!s.judged && s.waiting) return { label: "waiting", tone: "info", detail: detail(s) };
  const tone = rateTone(s);
  return { label: HEALTH[tone], tone, detail: detail(s) };
}

// {label, tone, detail} -> its badge (the detail as its tooltip)
export function verdictBadge(v) {
  const el = badge(v.label, v.tone);
  if (v.detail) el.title = v.detail;
  return el;
}
