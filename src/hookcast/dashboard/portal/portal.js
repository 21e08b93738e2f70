// The customer portal: one owner's endpoints, their deliveries and the event catalog, through
// the API with the portal link's token. With a managing link, the customer also adds,
// pauses, activates and deletes endpoints, rotates their secrets, chooses their event types
// and retries failed deliveries.
import { ApiError, del, get, post, put, session } from "./api.js";
import { badge, code, h, kv, table, when } from "./dom.js";
import { applyTheme } from "./theme.js";

const main = document.getElementById("main");
const nav = document.getElementById("nav");
const alertBox = document.getElementById("alert");
const notice = document.getElementById("notice");

const PER_PAGE = 20;
const CATALOG_PAGES = 10; // of 100 types: the catalog a form offers is bounded
const FINAL = new Set(["Success", "Failure", "Discarded"]);
const RESENDABLE = new Set(["Failure", "Discarded"]);
// a view re-reads its deliveries every second while some are under way, every five
// seconds otherwise, and stops after five minutes (the Refresh button reads them again)
const POLL_MS = 1000;
const IDLE_POLL_MS = 5000;
const POLL_FOR_MS = 5 * 60 * 1000;
const STATUS_TEXT = { active: "active", paused: "paused", inactive: "disabled" };

// each navigation bumps this: what an older view started (renders, polls) then stops
let generation = 0;
// what the next view says once it is shown (after an action that navigates)
let pending = { notice: "", error: "" };
// the first view does not take the focus: in a provider's page (an iframe) that would
// pull the focus away from it
let firstView = true;

// ------------------------------------------------------------------ start

function meta(name) {
  const el = document.querySelector(`meta[name="${name}"]`);
  return el ? el.getAttribute("content") : null;
}

function start() {
  const params = new URLSearchParams(location.search);
  applyTheme(params);
  const token = params.get("token");
  if (token !== null) {
    // out of the address bar at once: not in the history, not in a Referer, not in a
    // bookmark or a screenshot of the page; kept for this tab in sessionStorage
    params.delete("token");
    const query = params.toString();
    history.replaceState(null, "", location.pathname + (query ? `?${query}` : "") + location.hash);
    const project = meta("portal-project");
    if (!project) {
      session.clear();
      fatal(meta("portal-error") || "authorization failed");
      return;
    }
    session.save(token, project, meta("portal-manage") === "true");
  }
  if (!session.token || !session.project) {
    fatal("this page needs the link you were given: open it again from there");
    return;
  }
  window.addEventListener("hashchange", () => route());
  route();
}

function fatal(message) {
  nav.hidden = true;
  main.replaceChildren(
    h("h1", { tabindex: "-1" }, "This link cannot be used"),
    h("p", {}, "Ask for a new link to this page."),
  );
  showError(message);
}

// ------------------------------------------------------------------ messages

function describe(err) {
  const message = err instanceof Error ? err.message : String(err);
  if (err instanceof ApiError && err.status === 401) {
    return `${message}. Ask for a new link to this page.`;
  }
  return message;
}

function showError(err) {
  alertBox.textContent = describe(err);
  alertBox.hidden = false;
}

function say(text) {
  notice.textContent = text;
  notice.hidden = false;
}

function clearMessages() {
  alertBox.hidden = true;
  alertBox.textContent = "";
  notice.hidden = true;
  notice.textContent = "";
}

// run an action of a button: the button is busy meanwhile, errors go to the alert
async function act(button, action) {
  clearMessages();
  button.disabled = true;
  button.setAttribute("aria-busy", "true");
  try {
    await action();
  } catch (err) {
    showError(err);
  } finally {
    button.disabled = false;
    button.removeAttribute("aria-busy");
    if (button.isConnected && document.activeElement === document.body) button.focus();
  }
}

// ------------------------------------------------------------------ routing

function parts() {
  return location.hash
    .replace(/^#\/?/, "")
    .split("/")
    .filter(Boolean)
    .map((p) => {
      try {
        return decodeURIComponent(p);
      } catch {
        return p; // a malformed address: it names nothing, the view says so
      }
    });
}

function go(hash, message = {}) {
  pending = { notice: message.notice || "", error: message.error || "" };
  if (location.hash === hash) route();
  else location.hash = hash;
}

// show the view of the address; *focus*: a selector to focus once shown (else its heading)
async function route(focus) {
  const gen = ++generation;
  const [first, id, sub, deliveryId] = parts();
  for (const link of nav.querySelectorAll("a")) {
    const current = link.dataset.nav === (first === "catalog" ? "catalog" : "endpoints");
    if (current) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  const said = pending;
  pending = { notice: "", error: "" };
  if (focus === undefined) {
    clearMessages();
    main.replaceChildren(h("p", { class: "muted" }, "Loading…"));
  }
  let view;
  if (first === "catalog") view = () => catalogView();
  else if (first === "endpoints" && id && sub === "deliveries" && deliveryId) {
    view = () => deliveryView(id, deliveryId, gen);
  } else if (first === "endpoints" && id) view = () => endpointView(id, gen);
  else view = () => endpointsView();
  try {
    const node = await view();
    if (gen !== generation) return;
    main.replaceChildren(node);
  } catch (err) {
    if (gen !== generation) return;
    main.replaceChildren(
      h("h1", { tabindex: "-1" }, "Not available"),
      h("p", {}, h("a", { href: "#/endpoints" }, "Back to your endpoints")),
    );
    showError(err);
  }
  if (said.notice) say(said.notice);
  if (said.error) showError(said.error);
  if (firstView) {
    firstView = false;
    return;
  }
  const target = (focus && main.querySelector(focus)) || main.querySelector("h1");
  if (target) target.focus();
}

// ------------------------------------------------------------------ shared pieces

// a table of pages of items: the first page now, "Show more" for the next ones
// (*first*: the first page, when the caller has it already)
async function pagedTable({ path, query, caption, headers, row, empty, name, first }) {
  first = first || (await get(path, { perPage: PER_PAGE, ...query }));
  const tbody = h("tbody", {}, first.content.map(row));
  const wrap = h("div", { class: "paged", "data-list": name });
  if (!first.content.length) {
    wrap.append(h("p", { class: "muted empty" }, empty));
    return wrap;
  }
  wrap.append(
    h(
      "table",
      {},
      h("caption", { class: "visually-hidden" }, caption),
      h("thead", {}, h("tr", {}, headers.map((n) => h("th", { scope: "col" }, n)))),
      tbody,
    ),
  );
  let cursor = first.pagination.has_next_page ? first.pagination.next_page_cursor : null;
  if (cursor) {
    const more = h("button", { type: "button", class: "secondary more" }, "Show more");
    more.addEventListener("click", () =>
      act(more, async () => {
        const next = await get(path, { perPage: PER_PAGE, ...query, next_page_cursor: cursor });
        const rows = next.content.map(row);
        tbody.append(...rows);
        cursor = next.pagination.has_next_page ? next.pagination.next_page_cursor : null;
        if (!cursor) more.remove();
        const focusable = rows.length && rows[0].querySelector("a, button");
        if (focusable) focusable.focus();
      }),
    );
    wrap.append(more);
  }
  return wrap;
}

// every event type of the catalog (a bounded number of pages)
async function catalogTypes() {
  const types = [];
  let cursor;
  for (let i = 0; i < CATALOG_PAGES; i++) {
    const page = await get("/event-types", { perPage: 100, next_page_cursor: cursor });
    types.push(...page.content);
    if (!page.pagination.has_next_page) break;
    cursor = page.pagination.next_page_cursor;
  }
  return types;
}

function statusBadge(endpoint) {
  const text = STATUS_TEXT[endpoint.status] || endpoint.status;
  return badge(text, `endpoint-status ${endpoint.status}`);
}

function deliveryBadge(status) {
  return badge(status, `delivery-status ${status.toLowerCase()}`);
}

let uniq = 0;
function nextId(prefix) {
  uniq += 1;
  return `${prefix}-${uniq}`;
}

// checkboxes of the catalog's event types; none ticked means every type
function eventTypeChoices(types, selected, legend = "Event types") {
  const chosen = new Set((selected || []).filter((t) => t !== "*"));
  const known = new Set(types.map((t) => t.name));
  const offered = types.filter((t) => !t.deprecated_at || chosen.has(t.name));
  const extra = [...chosen].filter((name) => !known.has(name)).map((name) => ({ name, extra: true }));
  const items = [...offered, ...extra];
  const fieldset = h(
    "fieldset",
    { class: "event-types" },
    h("legend", {}, legend),
    h("p", { class: "hint" }, "Leave every box unticked to receive all event types."),
  );
  if (!items.length) {
    fieldset.append(h("p", { class: "muted" }, "No event types are listed yet: you receive every event."));
    return fieldset;
  }
  const list = h("ul", { class: "choices" });
  for (const type of items) {
    const id = nextId("type");
    const descId = `${id}-desc`;
    const box = h("input", {
      type: "checkbox",
      name: "event_types",
      value: type.name,
      id,
      checked: chosen.has(type.name),
      "aria-describedby": type.description ? descId : undefined,
    });
    const li = h(
      "li",
      { "data-event-type": type.name },
      h(
        "label",
        { for: id },
        box,
        h("span", { class: "type-name" }, type.name),
        type.deprecated_at ? badge("deprecated", "deprecated") : null,
        type.extra ? h("span", { class: "muted" }, " (not in the catalog)") : null,
      ),
      type.description ? h("p", { class: "type-desc", id: descId }, type.description) : null,
      type.example !== undefined && type.example !== null
        ? h("details", { class: "example" }, h("summary", {}, "Example payload"), code(type.example))
        : null,
    );
    list.append(li);
  }
  fieldset.append(list);
  return fieldset;
}

function chosenTypes(form) {
  const types = [...form.querySelectorAll("input[name=event_types]:checked")].map((b) => b.value);
  return types.length ? types : ["*"];
}

function field(label, input, hint) {
  const id = input.id || nextId("field");
  input.id = id;
  const hintId = hint ? `${id}-hint` : undefined;
  if (hintId) input.setAttribute("aria-describedby", hintId);
  return h(
    "div",
    { class: "field" },
    h("label", { for: id }, label),
    input,
    hint ? h("p", { class: "hint", id: hintId }, hint) : null,
  );
}

function backLink(href, text) {
  return h("p", { class: "back" }, h("a", { href }, `← ${text}`));
}

// ------------------------------------------------------------------ endpoints

async function endpointsView() {
  const manage = session.canManage;
  const [list, types] = await Promise.all([
    pagedTable({
      path: "/endpoints",
      name: "endpoints",
      caption: "Your endpoints",
      headers: ["Name", "URL", "Status", "Added"],
      empty: manage ? "No endpoints yet: add one below." : "No endpoints yet.",
      row: (ep) =>
        h(
          "tr",
          { "data-endpoint": ep.uid },
          h("td", {}, h("a", { href: `#/endpoints/${encodeURIComponent(ep.uid)}` }, ep.name || ep.url)),
          h("td", { class: "url" }, ep.url),
          h("td", { class: "status" }, statusBadge(ep)),
          h("td", {}, when(ep.created_at)),
        ),
    }),
    manage ? catalogTypes() : null,
  ]);
  return h(
    "section",
    {},
    h("h1", { tabindex: "-1" }, "Your endpoints"),
    h("p", { class: "muted" }, "Where webhooks are sent to you. Choose one to see what was sent to it."),
    list,
    manage ? addForm(types) : null,
  );
}

function addForm(types) {
  const url = h("input", {
    type: "url",
    name: "url",
    id: "new-url",
    required: true,
    maxlength: "2048",
    autocomplete: "off",
    placeholder: "https://example.com/webhooks",
  });
  const name = h("input", { type: "text", name: "name", id: "new-name", maxlength: "200" });
  const description = h("textarea", {
    name: "description",
    id: "new-description",
    rows: "2",
    maxlength: "2000",
  });
  const submit = h("button", { type: "submit" }, "Add endpoint");
  const form = h(
    "form",
    { id: "add-endpoint", class: "card", "aria-labelledby": "add-title" },
    h("h2", { id: "add-title" }, "Add an endpoint"),
    field("Endpoint URL", url, "The address we send webhooks to, with POST."),
    field("Name (optional)", name),
    field("Description (optional)", description),
    eventTypeChoices(types, []),
    h("div", { class: "actions" }, submit),
  );
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    act(submit, async () => {
      const body = { url: url.value.trim() };
      if (name.value.trim()) body.name = name.value.trim();
      if (description.value.trim()) body.description = description.value.trim();
      const ep = await post("/endpoints", body);
      const target = `#/endpoints/${encodeURIComponent(ep.uid)}`;
      try {
        await post("/subscriptions", {
          name: `${ep.name}`.slice(0, 200),
          endpoint_id: ep.uid,
          filter_config: { event_types: chosenTypes(form) },
        });
      } catch (err) {
        go(target, { error: `The endpoint was added, but its event types were not saved: ${describe(err)}` });
        return;
      }
      go(target, { notice: "Endpoint added." });
    });
  });
  return form;
}

async function endpointView(id, gen) {
  const path = `/endpoints/${encodeURIComponent(id)}`;
  const [ep, subs, types] = await Promise.all([
    get(path),
    get("/subscriptions", { endpointId: id, perPage: 50 }),
    catalogTypes(),
  ]);
  const sub = subs.content[0] || null;
  const manage = session.canManage;
  return h(
    "section",
    { class: "endpoint", "data-endpoint": ep.uid },
    backLink("#/endpoints", "Your endpoints"),
    h("h1", { tabindex: "-1" }, ep.name || ep.url),
    kv([
      ["URL", h("span", { class: "url" }, ep.url)],
      ["Status", h("span", { class: "status" }, statusBadge(ep))],
      ["Description", ep.description || "—"],
      ["Added", when(ep.created_at)],
      ...(ep.status === "inactive" && ep.disabled_reason
        ? [["Why disabled", ep.disabled_reason === "manual" ? "disabled by the provider" : ep.disabled_reason]]
        : []),
    ]),
    manage ? endpointActions(ep) : null,
    secretsSection(ep, manage),
    eventTypesSection(ep, sub, types, manage),
    await deliveriesSection(ep, manage, gen),
  );
}

function endpointActions(ep) {
  const path = `/endpoints/${encodeURIComponent(ep.uid)}`;
  const wrap = h("div", { class: "actions endpoint-actions" });
  let toggle;
  if (ep.status === "active") {
    toggle = h("button", { type: "button", class: "secondary pause" }, "Pause deliveries");
    toggle.addEventListener("click", () =>
      act(toggle, async () => {
        await put(`${path}/pause`);
        pending = { notice: "Deliveries to this endpoint are paused.", error: "" };
        await route("button.activate");
      }),
    );
  } else {
    toggle = h("button", { type: "button", class: "secondary activate" }, "Activate");
    toggle.addEventListener("click", () =>
      act(toggle, async () => {
        await post(`${path}/activate`);
        pending = { notice: "The endpoint is active: deliveries resume.", error: "" };
        await route("button.pause");
      }),
    );
  }
  const remove = h("button", { type: "button", class: "danger delete", "aria-expanded": "false" }, "Delete endpoint");
  const confirmYes = h("button", { type: "button", class: "danger confirm-delete" }, "Yes, delete it");
  const confirmNo = h("button", { type: "button", class: "secondary" }, "Cancel");
  const confirm = h(
    "div",
    { class: "confirm", role: "group", "aria-label": "Confirm deletion", hidden: true },
    h("p", {}, "Delete this endpoint? Nothing more is sent to it, and this cannot be undone."),
    confirmYes,
    confirmNo,
  );
  remove.addEventListener("click", () => {
    confirm.hidden = false;
    remove.setAttribute("aria-expanded", "true");
    confirmYes.focus();
  });
  confirmNo.addEventListener("click", () => {
    confirm.hidden = true;
    remove.setAttribute("aria-expanded", "false");
    remove.focus();
  });
  confirmYes.addEventListener("click", () =>
    act(confirmYes, async () => {
      await del(path);
      go("#/endpoints", { notice: `Endpoint ${ep.name || ep.url} deleted.` });
    }),
  );
  wrap.append(toggle, remove, confirm);
  return wrap;
}

function masked(value) {
  const prefix = /^[a-z]+_/i.exec(value);
  return `${prefix ? prefix[0] : ""}${"•".repeat(16)}`;
}

function secretsSection(ep, manage) {
  const now = Date.now();
  const secrets = [...(ep.secrets || [])].reverse(); // the newest, the current one, first
  const list = h("ul", { class: "secrets" });
  secrets.forEach((secret, i) => {
    const valueId = nextId("secret");
    const value = h("code", { class: "secret-value", id: valueId }, masked(secret.value));
    const reveal = h(
      "button",
      { type: "button", class: "secondary reveal", "aria-pressed": "false", "aria-controls": valueId },
      "Reveal",
    );
    reveal.addEventListener("click", () => {
      const shown = reveal.getAttribute("aria-pressed") === "true";
      value.textContent = shown ? masked(secret.value) : secret.value;
      reveal.setAttribute("aria-pressed", shown ? "false" : "true");
      reveal.textContent = shown ? "Reveal" : "Hide";
    });
    const expires = secret.expires_at ? Date.parse(secret.expires_at) : null;
    let label;
    if (i === 0 && expires === null) label = "Current";
    else if (expires !== null && expires <= now) label = "Expired";
    else label = expires === null ? "Active" : `Valid until ${when(secret.expires_at)}`;
    list.append(
      h(
        "li",
        { "data-secret": secret.uid },
        h("span", { class: "secret-label" }, label),
        value,
        reveal,
      ),
    );
  });
  return h(
    "section",
    { class: "card", "aria-labelledby": "secrets-title" },
    h("h2", { id: "secrets-title" }, "Signing secret"),
    h(
      "p",
      { class: "muted" },
      "Every webhook is signed with this secret: check the signature with it before you trust a webhook. " +
        "After a rotation, the previous secret keeps signing too until it expires.",
    ),
    list,
    manage ? rotateForm(ep) : null,
  );
}

function rotateForm(ep) {
  const select = h(
    "select",
    { name: "expiration", id: "rotate-expiration" },
    h("option", { value: "3600", selected: true }, "1 hour"),
    h("option", { value: "86400" }, "24 hours"),
    h("option", { value: "604800" }, "7 days"),
    h("option", { value: "0" }, "no time: stop it at once"),
  );
  const submit = h("button", { type: "submit" }, "Rotate secret");
  const form = h(
    "form",
    { class: "rotate-secret", "aria-label": "Rotate the secret" },
    field("Keep the current secret working for", select),
    h("div", { class: "actions" }, submit),
  );
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    act(submit, async () => {
      await put(`/endpoints/${encodeURIComponent(ep.uid)}/expire_secret`, {
        expiration: Number(select.value),
      });
      pending = { notice: "Secret rotated: a new secret signs from now on.", error: "" };
      await route("form.rotate-secret button[type=submit]");
    });
  });
  return form;
}

function eventTypesSection(ep, sub, types, manage) {
  const current = sub ? sub.filter_config.event_types : ["*"];
  const section = h(
    "section",
    { class: "card", "aria-labelledby": "types-title" },
    h("h2", { id: "types-title" }, "Event types"),
  );
  if (!manage) {
    const all = current.includes("*");
    section.append(
      all
        ? h("p", { class: "subscribed" }, "This endpoint receives every event type.")
        : h(
            "ul",
            { class: "subscribed" },
            current.map((name) => {
              const type = types.find((t) => t.name === name);
              return h("li", {}, h("span", { class: "type-name" }, name), type && type.description ? ` — ${type.description}` : "");
            }),
          ),
    );
    return section;
  }
  const submit = h("button", { type: "submit" }, "Save event types");
  const form = h(
    "form",
    { class: "edit-types", "aria-label": "Event types of this endpoint" },
    eventTypeChoices(types, current, "Send this endpoint"),
    h("div", { class: "actions" }, submit),
  );
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    act(submit, async () => {
      const eventTypes = chosenTypes(form);
      if (sub) {
        // the filter the provider may have set stays as it is
        await put(`/subscriptions/${encodeURIComponent(sub.uid)}`, {
          filter_config: { event_types: eventTypes, filter: sub.filter_config.filter },
        });
      } else {
        await post("/subscriptions", {
          name: `${ep.name}`.slice(0, 200),
          endpoint_id: ep.uid,
          filter_config: { event_types: eventTypes },
        });
      }
      pending = { notice: "Event types saved.", error: "" };
      await route("form.edit-types button[type=submit]");
    });
  });
  section.append(form);
  return section;
}

// ------------------------------------------------------------------ deliveries

function deliveryRow(ep, d, manage, onRetry) {
  const href = `#/endpoints/${encodeURIComponent(ep.uid)}/deliveries/${encodeURIComponent(d.uid)}`;
  let retry = null;
  if (manage && RESENDABLE.has(d.status)) {
    retry = h(
      "button",
      {
        type: "button",
        class: "secondary retry",
        id: `retry-${d.uid}`,
        "aria-label": `Retry the ${d.event_type} delivery of ${when(d.created_at)}`,
      },
      "Retry",
    );
    retry.addEventListener("click", () => onRetry(retry, d));
  }
  return h(
    "tr",
    { "data-delivery": d.uid },
    h("td", {}, h("a", { href, id: `open-${d.uid}` }, d.event_type)),
    h("td", { class: "status" }, deliveryBadge(d.status)),
    h("td", { class: "attempts" }, String(d.metadata ? d.metadata.num_trials : 0)),
    h("td", {}, when(d.created_at)),
    manage ? h("td", { class: "row-actions" }, retry) : null,
  );
}

// the deliveries' state as shown: a refresh changes the page only when it changed
function signature(deliveries) {
  return deliveries.map((d) => `${d.uid}:${d.status}:${d.metadata ? d.metadata.num_trials : 0}`).join(",");
}

// put *node* in place of *holder*'s children, keeping the focus where it was (by id)
function swap(holder, nodes, fallback) {
  const focused = holder.contains(document.activeElement) ? document.activeElement : null;
  const row = focused && focused.closest("tr[data-delivery]");
  holder.replaceChildren(...nodes);
  if (!focused) return;
  const again =
    (focused.id && document.getElementById(focused.id)) ||
    (row && document.getElementById(`open-${row.dataset.delivery}`)) ||
    fallback;
  if (again) again.focus();
}

async function deliveriesSection(ep, manage, gen) {
  const heading = h("h2", { id: "deliveries-title", tabindex: "-1" }, "Deliveries");
  const again = h("button", { type: "button", class: "secondary refresh" }, "Refresh");
  const holder = h("div", {});
  const section = h(
    "section",
    { class: "deliveries", "aria-labelledby": "deliveries-title" },
    h("div", { class: "section-head" }, heading, again),
    holder,
  );
  const query = { endpointId: ep.uid };
  let until = Date.now() + POLL_FOR_MS;
  let shown = null;
  let timer = null;

  const retry = (button, d) =>
    act(button, async () => {
      await put(`/eventdeliveries/${encodeURIComponent(d.uid)}/resend`);
      say("Retry scheduled: the delivery is sent again.");
      await refresh();
    });
  again.addEventListener("click", () => act(again, () => refresh()));

  const load = (first) =>
    pagedTable({
      first,
      path: "/eventdeliveries",
      query,
      name: "deliveries",
      caption: "Deliveries to this endpoint",
      headers: ["Event type", "Status", "Attempts", "Created", ...(manage ? ["Actions"] : [])],
      empty: "Nothing was sent to this endpoint yet.",
      row: (d) => deliveryRow(ep, d, manage, retry),
    });

  // re-read the first page (the page changes only when the deliveries did)
  async function refresh() {
    clearTimeout(timer);
    if (gen !== generation) return;
    until = Math.max(until, Date.now() + POLL_FOR_MS);
    const first = await get("/eventdeliveries", { perPage: PER_PAGE, ...query });
    if (gen !== generation) return;
    const now = signature(first.content);
    if (now !== shown) {
      shown = now;
      swap(holder, [await load(first)], heading);
    }
    if (Date.now() < until) {
      const busy = first.content.some((d) => !FINAL.has(d.status));
      timer = setTimeout(() => refresh().catch(showError), busy ? POLL_MS : IDLE_POLL_MS);
    }
  }

  await refresh();
  return section;
}

async function deliveryView(endpointId, deliveryId, gen) {
  const path = `/eventdeliveries/${encodeURIComponent(deliveryId)}`;
  const [ep, first] = await Promise.all([get(`/endpoints/${encodeURIComponent(endpointId)}`), get(path)]);
  const event = await get(`/events/${encodeURIComponent(first.event_id)}`).catch(() => null);
  const manage = session.canManage;
  const heading = h("h1", { tabindex: "-1" }, `Delivery of ${first.event_type}`);
  const live = h("div", { class: "live" });
  let until = Date.now() + POLL_FOR_MS;
  let shown = null;
  let timer = null;

  function render(d, attempts) {
    const nodes = [
      kv([
        ["Status", h("span", { class: "status" }, deliveryBadge(d.status))],
        ["Attempts", h("span", { class: "attempts" }, String(d.metadata ? d.metadata.num_trials : 0))],
        ["Created", when(d.created_at)],
        ["Next attempt", FINAL.has(d.status) ? "—" : when(d.metadata && d.metadata.next_send_time)],
      ]),
    ];
    if (manage && RESENDABLE.has(d.status)) {
      const retry = h("button", { type: "button", class: "retry", id: "retry-delivery" }, "Retry delivery");
      retry.addEventListener("click", () =>
        act(retry, async () => {
          await put(`${path}/resend`);
          say("Retry scheduled: the delivery is sent again.");
          until = Date.now() + POLL_FOR_MS;
          await refresh();
        }),
      );
      nodes.push(h("div", { class: "actions" }, retry));
    }
    nodes.push(h("h2", {}, "Attempts"));
    if (!attempts.length) nodes.push(h("p", { class: "muted" }, "No attempt yet."));
    for (const a of [...attempts].reverse()) nodes.push(attemptCard(a));
    return nodes;
  }

  async function refresh() {
    clearTimeout(timer);
    if (gen !== generation) return;
    const [d, attempts] = await Promise.all([get(path), get(`${path}/deliveryattempts`)]);
    if (gen !== generation) return;
    const now = `${signature([d])}:${attempts.length}`;
    if (now !== shown) {
      shown = now;
      swap(live, render(d, attempts), heading);
    }
    if (!FINAL.has(d.status) && Date.now() < until) {
      timer = setTimeout(() => refresh().catch(showError), POLL_MS);
    }
  }

  await refresh();
  return h(
    "section",
    { class: "delivery", "data-delivery": first.uid },
    backLink(`#/endpoints/${encodeURIComponent(ep.uid)}`, ep.name || ep.url),
    heading,
    live,
    h("h2", {}, "Payload"),
    event ? code(event.data) : h("p", { class: "muted" }, "The event is no longer kept."),
  );
}

function headerTable(caption, headers) {
  const rows = Object.entries(headers || {}).map(([name, value]) =>
    h("tr", {}, h("th", { scope: "row" }, name), h("td", {}, Array.isArray(value) ? value.join(", ") : String(value))),
  );
  return table(caption, ["Header", "Value"], rows, "None.");
}

function attemptCard(a) {
  const outcome = a.http_status || a.error || "no answer";
  return h(
    "article",
    { class: `attempt card ${a.status ? "ok" : "failed"}`, "data-attempt": a.uid },
    h("h3", {}, `${when(a.created_at)}: `, h("span", { class: "outcome" }, outcome)),
    kv([
      ["URL", h("span", { class: "url" }, a.url)],
      ["Method", a.method],
      ["Error", a.error || "—"],
    ]),
    h(
      "details",
      { class: "request" },
      h("summary", {}, "Request headers (values hidden)"),
      headerTable("Request headers", a.request_http_header),
    ),
    h(
      "details",
      { class: "response", open: !a.status },
      h("summary", {}, "Response"),
      headerTable("Response headers", a.response_http_header),
      h("h4", {}, "Body"),
      a.response_data ? code(a.response_data) : h("p", { class: "muted" }, "Empty."),
    ),
  );
}

// ------------------------------------------------------------------ the catalog

async function catalogView() {
  const types = await catalogTypes();
  const items = types.map((t) =>
    h(
      "article",
      { class: "event-type card", "data-event-type": t.name },
      h(
        "h2",
        {},
        h("span", { class: "type-name" }, t.name),
        t.category ? badge(t.category, "category") : null,
        t.deprecated_at ? badge("deprecated", "deprecated") : null,
      ),
      h("p", { class: "type-desc" }, t.description || "No description."),
      h("h3", {}, "Example payload"),
      t.example !== undefined && t.example !== null ? code(t.example) : h("p", { class: "muted" }, "No example."),
      t.json_schema
        ? h("details", { class: "schema" }, h("summary", {}, "JSON Schema of data"), code(t.json_schema))
        : null,
    ),
  );
  const section = h(
    "section",
    { class: "catalog" },
    h("h1", { tabindex: "-1" }, "Event catalog"),
    h(
      "p",
      { class: "muted" },
      "The events that can be sent to you, with an example of each. Choose the ones an endpoint receives on its page.",
    ),
    items.length ? items : h("p", { class: "muted empty" }, "No event types are listed yet."),
  );
  return section;
}

start();
