// Who may use the project: its API keys (the broadcast grant included) and the customer
// portal's links. Tokens are shown once, when they are made.
import { projectApi } from "./api.js";
import { badge, fill, h, table, when } from "./dom.js";
import { act, checkField, confirmed, feedback, field, form, input, select, shownOnce } from "./forms.js";

const ROLES = [["admin", "admin"], ["publisher", "publisher"], ["viewer", "viewer"]];
const ROLE_HINT = "admin manages endpoints, subscriptions, keys and portal links; publisher sends events and retries deliveries; viewer reads only.";

// ---- API keys ------------------------------------------------------------------------------

export async function apiKeys(page) {
  const [pid] = page.params;
  const p = projectApi(pid);
  const list = h("div", { id: "key-list" });
  const listBox = feedback();
  listBox.el.id = "key-notice";

  async function drawList() {
    const keys = await p.get("/api-keys");
    const rows = keys.map((k) => h("tr", { "data-key": k.uid },
      h("td", {}, k.name || h("span", { class: "muted" }, "(no name)"), h("div", { class: "mono small muted" }, k.uid)),
      h("td", {}, k.role),
      h("td", { class: "broadcast" }, k.broadcast ? badge("may broadcast", "warn") : "—"),
      h("td", { class: "status" }, badge(k.status, k.status === "active" ? "good" : "idle")),
      h("td", {}, k.expires_at ? when(k.expires_at) : "never"),
      h("td", {}, when(k.created_at)),
      h("td", {}, k.status === "active"
        ? confirmed("Revoke", `Revoke ${k.name || k.uid}? It stops working at once.`, "Yes, revoke it", "revoke",
          (yes) => revoke(yes, k))
        : null)));
    fill(list, table(["Key", "Role", "Broadcast", "Status", "Expires (UTC)", "Created (UTC)", ""], rows, "No keys."));
  }

  const revoke = (button, key) => act(button, listBox, async () => {
    await p.del(`/api-keys/${key.uid}`);
    await drawList();
    listBox.ok(`Key ${key.name || key.uid} revoked.`);
  });

  const name = input("name", { id: "key-name", placeholder: "billing-service" });
  const role = select("role", ROLES, "publisher");
  role.id = "key-role";
  const broadcast = h("input", { type: "checkbox", name: "broadcast", id: "key-broadcast" });
  const days = input("expires_in_days", { id: "key-days", type: "number", min: 1, step: 1, inputmode: "numeric" });
  const box = feedback();
  const create = form({ class: "card stack", id: "new-key", "aria-labelledby": "new-key-title" }, [
    h("h2", { id: "new-key-title" }, "Create an API key"),
    h("div", { class: "grid2" },
      field("Name", name, "Who or what uses it."),
      field("Role", role, ROLE_HINT),
      field("Expires after (days)", days, "Empty: the key does not expire.")),
    checkField("Grant the broadcast permission", broadcast,
      "A broadcast sends one event to every endpoint of the project whose subscription matches, whoever owns it: every customer at once. Tick it only for a key that must do that."),
    h("div", { class: "buttons" }, h("button", { type: "submit", class: "primary" }, "Create key")),
  ], box, async () => {
    const body = { name: name.value.trim(), role: role.value, broadcast: broadcast.checked };
    const n = days.value.trim();
    if (n) {
      const value = Number(n);
      if (!Number.isFinite(value) || value <= 0) throw new Error("Expires after must be a number of days above 0, or empty");
      body.expires_in_days = value;
    }
    const key = await p.post("/api-keys", body);
    await drawList();
    box.ok(h("p", {}, `Key ${key.name || key.uid} created (${key.role}${key.broadcast ? ", may broadcast" : ""}).`),
      shownOnce("API key", key.key, "new-key-token"));
    name.value = "";
    broadcast.checked = false;
    days.value = "";
  });

  await drawList();
  page.render(h("h1", {}, "API keys"), listBox.el, list,
    h("p", { class: "muted small" }, "A key's secret is shown once, when it is made. Revoking the key you signed in with signs you out."),
    create);
}

// ---- portal links --------------------------------------------------------------------------

const portalUrl = (token) => `${location.origin}/portal?token=${encodeURIComponent(token)}`;

export async function portalLinks(page) {
  const [pid] = page.params;
  const p = projectApi(pid);
  const list = h("div", { id: "link-list" });
  const listBox = feedback();
  listBox.el.id = "link-notice";

  async function drawList() {
    const links = (await p.get("/portal-links", { perPage: 100 })).content;
    const rows = links.map((l) => h("tr", { "data-link": l.uid },
      h("td", {}, l.name, h("div", { class: "mono small muted" }, l.token)),
      h("td", {}, l.owner_id),
      h("td", {}, l.can_manage_endpoint ? badge("manages endpoints", "warn") : "reads only"),
      h("td", {}, l.auth_type === "refresh_token" ? "refresh token (1 hour)" : "static token"),
      h("td", {}, l.endpoint_count),
      h("td", {}, when(l.created_at)),
      h("td", { class: "row-actions" },
        h("button", { type: "button", class: "new-url", onclick: (e) => newUrl(e.currentTarget, l) }, "New link URL"),
        confirmed("Revoke", `Revoke ${l.name}? Its link stops working at once.`, "Yes, revoke it", "revoke",
          (yes) => revoke(yes, l)))));
    fill(list, table(["Name", "Owner ID", "Access", "Token", "Endpoints", "Created (UTC)", ""], rows, "No portal links yet."));
  }

  const revoke = (button, link) => act(button, listBox, async () => {
    await p.put(`/portal-links/${link.uid}/revoke`);
    await drawList();
    listBox.ok(`Portal link ${link.name} revoked.`);
  });

  const newUrl = (button, link) => act(button, listBox, async () => {
    const token = await p.get(`/portal-links/${link.uid}/refresh_token`);
    listBox.ok(h("p", {}, `A new URL for ${link.name}: the last one stopped working.`),
      shownOnce("Portal link URL", portalUrl(token), "portal-url"));
  });

  const name = input("name", { id: "link-name", required: true, placeholder: "Acme Inc." });
  const owner = input("owner_id", { id: "link-owner", required: true, placeholder: "acme" });
  const manage = h("input", { type: "checkbox", name: "can_manage_endpoint", id: "link-manage" });
  const auth = select("auth_type", [["static_token", "static token: does not expire"],
    ["refresh_token", "refresh token: expires after an hour"]], "static_token");
  auth.id = "link-auth";
  const box = feedback();
  const create = form({ class: "card stack", id: "new-link", "aria-labelledby": "new-link-title" }, [
    h("h2", { id: "new-link-title" }, "Create a portal link"),
    h("p", { class: "muted" }, "A customer's own page: it shows the endpoints of one owner ID, their events and deliveries, and nothing else of the project."),
    h("div", { class: "grid2" },
      field("Name", name),
      field("Owner ID", owner, "The owner_id of the customer's endpoints."),
      field("Token", auth)),
    checkField("Let the customer manage its endpoints", manage,
      "Add, edit, pause and delete its own endpoints, rotate their secrets, choose their event types and retry deliveries. Off: the link only reads."),
    h("div", { class: "buttons" }, h("button", { type: "submit", class: "primary" }, "Create link")),
  ], box, async () => {
    const body = { name: name.value.trim(), owner_id: owner.value.trim(), can_manage_endpoint: manage.checked, auth_type: auth.value };
    const link = await p.post("/portal-links", body);
    await drawList();
    box.ok(h("p", {}, `Portal link ${link.name} created for owner ${link.owner_id}.`),
      shownOnce("Portal link URL", link.url || portalUrl(link.token), "portal-url"));
    name.value = "";
    owner.value = "";
    manage.checked = false;
  });

  await drawList();
  page.render(h("h1", {}, "Portal links"), listBox.el, list, create);
}
