// The JSON API, called with the portal link's token (kept for this tab only: the page
// takes it out of the address bar as soon as it has read it).
const KEYS = { token: "portal.token", project: "portal.project", manage: "portal.manage" };

export const session = {
  get token() {
    return sessionStorage.getItem(KEYS.token) || "";
  },
  get project() {
    return sessionStorage.getItem(KEYS.project) || "";
  },
  get canManage() {
    return sessionStorage.getItem(KEYS.manage) === "true";
  },
  save(token, project, manage) {
    sessionStorage.setItem(KEYS.token, token);
    sessionStorage.setItem(KEYS.project, project);
    sessionStorage.setItem(KEYS.manage, manage ? "true" : "false");
  },
  clear() {
    for (const key of Object.values(KEYS)) sessionStorage.removeItem(key);
  },
};

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

// api("GET", "/endpoints", {query: {perPage: 20}}) -> the envelope's data, for the
// link's project
export async function api(method, path, { query, body } = {}) {
  const base = `/api/v1/projects/${encodeURIComponent(session.project)}`;
  const url = new URL(base + path, location.origin);
  for (const [name, value] of Object.entries(query || {})) {
    if (value !== undefined && value !== null && value !== "") url.searchParams.append(name, value);
  }
  const headers = { Authorization: `Bearer ${session.token}` };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let res;
  try {
    res = await fetch(url, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: "omit",
      referrerPolicy: "no-referrer",
    });
  } catch {
    throw new ApiError(0, "the server could not be reached: check your connection and try again");
  }
  let doc;
  try {
    doc = await res.json();
  } catch {
    doc = { status: false, message: `${res.status} ${res.statusText}` };
  }
  if (!res.ok || doc.status === false) throw new ApiError(res.status, doc.message || res.statusText);
  return doc.data;
}

export const get = (path, query) => api("GET", path, { query });
export const post = (path, body) => api("POST", path, { body });
export const put = (path, body) => api("PUT", path, { body });
export const del = (path) => api("DELETE", path);
