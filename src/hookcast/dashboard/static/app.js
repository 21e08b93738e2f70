// The dashboard's shell: a hash router, the header, sign-in and the projects page.
import { ApiError, api, projectApi, session } from "./api.js";
import { broadcastProgress, broadcasts } from "./broadcast.js";
import { errorBox, fill, h, table, when } from "./dom.js";
import { apiKeys, portalLinks } from "./access.js";
import { endpointPage, newEndpoint, subscriptionEditor } from "./endpoint.js";
import { delivery, endpoints, event, events } from "./views.js";

const main = document.getElementById("main");

const ROUTES = [
  [/^\/login$/, login],
  [/^\/projects$/, projects],
  [/^\/p\/([^/]+)\/endpoints$/, endpoints],
  [/^\/p\/([^/]+)\/endpoints\/new$/, newEndpoint],
  [/^\/p\/([^/]+)\/endpoints\/([^/]+)$/, endpointPage],
  [/^\/p\/([^/]+)\/subscriptions\/new$/, subscriptionEditor],
  [/^\/p\/([^/]+)\/subscriptions\/([^/]+)$/, subscriptionEditor],
  [/^\/p\/([^/]+)\/keys$/, apiKeys],
  [/^\/p\/([^/]+)\/portal-links$/, portalLinks],
  [/^\/p\/([^/]+)\/events$/, events],
  [/^\/p\/([^/]+)\/events\/([^/]+)$/, event],
  [/^\/p\/([^/]+)\/deliveries\/([^/]+)$/, delivery],
  [/^\/p\/([^/]+)\/broadcasts$/, broadcasts],
  [/^\/p\/([^/]+)\/broadcasts\/([^/]+)$/, broadcastProgress],
];

// the element with the keyboard focus in <main>, as a selector that finds it alone (by its
// id, or its tag and classes), to focus its successor after a redraw; null if none
function focusedSelector() {
  const el = document.activeElement;
  if (!el || el === main || !main.contains(el)) return null;
  if (el.id) return `#${CSS.escape(el.id)}`;
  if (!el.classList.length) return null;
  const selector = el.tagName.toLowerCase() + [...el.classList].map((c) => `.${CSS.escape(c)}`).join("");
  return main.querySelectorAll(selector).length === 1 ? selector : null;
}

let current = null; // the page on screen: left (its timers stopped) when the hash changes

// What a view gets: the URL's parts, render(), and loop()/every() to poll while shown.
function makePage(params, query) {
  const wakers = new Set();
  const page = {
    params,
    query,
    left: false,
    // a redraw keeps the keyboard's place: the focused control's successor takes the focus,
    // or, when it is gone for a while (a Retry button while the retry runs), the next
    // drawing that has it again, unless the focus went elsewhere meanwhile
    lost: null,
    render(...nodes) {
      if (page.left) return;
      const resting = document.activeElement === document.body || document.activeElement === null;
      const again = focusedSelector() || (resting ? page.lost : null);
      fill(main, nodes);
      const next = again ? main.querySelector(again) : null;
      next?.focus();
      page.lost = next ? null : again;
    },
    wake() {
      // cut the current waits of loop() short
      for (const done of wakers) done();
    },
    // run fn until it returns false or the page is left; fn returns how long to wait (ms)
    async loop(fn) {
      while (!page.left) {
        const wait = await fn();
        if (wait === false) return;
        await new Promise((resolve) => {
          const done = () => {
            clearTimeout(timer);
            wakers.delete(done);
            resolve();
          };
          const timer = setTimeout(done, wait);
          wakers.add(done);
        });
      }
    },
    every(ms, fn) {
      return page.loop(async () => ((await fn()) === false ? false : ms));
    },
  };
  return page;
}

async function route() {
  if (current) {
    current.left = true;
    current.wake();
  }
  const [path, search] = (location.hash.slice(1) || "/projects").split("?");
  if (!session.key && path !== "/login") {
    location.hash = "#/login";
    return;
  }
  for (const [pattern, view] of ROUTES) {
    const match = path.match(pattern);
    if (!match) continue;
    const page = makePage(match.slice(1).map(decodeURIComponent), new URLSearchParams(search));
    current = page;
    header(page.params[0], path);
    try {
      await view(page);
    } catch (err) {
      if (err instanceof ApiError && err.status === 401) {
        session.key = "";
        location.hash = "#/login?expired=1";
        return;
      }
      page.render(h("h1", {}, "Something went wrong"), errorBox(err));
    }
    return;
  }
  fill(main, h("h1", {}, "Not found"), h("a", { href: "#/projects" }, "Projects"));
}

const projectNames = new Map();

async function projectName(projectId) {
  if (!projectNames.has(projectId)) {
    const project = await projectApi(projectId).get("");
    projectNames.set(projectId, project.name);
  }
  return projectNames.get(projectId);
}

function header(projectId, path) {
  const signedIn = Boolean(session.key);
  document.getElementById("signout").hidden = !signedIn;
  document.getElementById("who").textContent = signedIn ? `key ${session.key.slice(0, 8)}…` : "";
  const nav = document.getElementById("nav");
  if (!signedIn) return fill(nav);
  const link = (href, text) =>
    h("a", { href, class: path.startsWith(href.slice(1)) ? "active" : null }, text);
  const items = [link("#/projects", "Projects")];
  if (projectId) {
    const name = h("span", { class: "project-name" }, "");
    projectName(projectId).then((n) => (name.textContent = n), () => {});
    const base = `#/p/${encodeURIComponent(projectId)}`;
    items.push(
      h("span", { class: "sep" }, "/"),
      name,
      link(`${base}/endpoints`, "Endpoints"),
      link(`${base}/events`, "Events"),
      link(`${base}/broadcasts`, "Broadcasts"),
      link(`${base}/keys`, "API keys"),
      link(`${base}/portal-links`, "Portal links"),
    );
  }
  fill(nav, items);
}

async function login(page) {
  const input = h("input", {
    id: "key",
    name: "key",
    type: "password",
    autocomplete: "off",
    placeholder: "paste an API key",
    required: true,
  });
  const message = h("div", {}, page.query.get("expired") ? errorBox(new Error("Please sign in again.")) : null);
  async function submit(e) {
    e.preventDefault();
    session.key = input.value.trim();
    try {
      await api("GET", "/projects");
      location.hash = "#/projects";
    } catch (err) {
      session.key = "";
      fill(message, errorBox(err));
    }
  }
  page.render(
    h(
      "form",
      { class: "card login", onsubmit: submit },
      h("h1", {}, "Sign in"),
      h("p", { class: "muted" }, "The instance admin key or a project API key. It is kept in this browser tab only."),
      h("label", { for: "key" }, "API key"),
      input,
      h("button", { type: "submit", class: "primary" }, "Sign in"),
      message,
    ),
  );
  input.focus();
}

async function projects(page) {
  const list = await api("GET", "/projects");
  for (const p of list) projectNames.set(p.uid, p.name);
  const rows = list.map((p) =>
    h(
      "tr",
      {},
      h("td", {}, h("a", { href: `#/p/${encodeURIComponent(p.uid)}/endpoints` }, p.name)),
      h("td", { class: "mono" }, p.uid),
      h("td", {}, p.type),
      h("td", {}, when(p.created_at)),
    ),
  );
  page.render(h("h1", {}, "Projects"), table(["Name", "ID", "Type", "Created (UTC)"], rows));
}

document.getElementById("signout").addEventListener("click", () => {
  session.key = "";
  projectNames.clear();
  location.hash = "#/login";
});
window.addEventListener("hashchange", route);
route();
