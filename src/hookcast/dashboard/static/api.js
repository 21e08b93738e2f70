// The JSON API, called with the key the user signed in with (kept for this tab only).
const KEY = "hookcast.key";

export const session = {
  get key() {
    return sessionStorage.getItem(KEY) || "";
  },
  set key(value) {
    if (value) sessionStorage.setItem(KEY, value);
    else sessionStorage.removeItem(KEY);
  },
};

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

// api("GET", "/projects", {query: {perPage: 50}}) -> the envelope's data; a list value is
// sent as the parameter repeated (status: ["Success", "Failure"])
export async function api(method, path, options = {}) {
  return (await call(method, path, options)).data;
}

// {data, message}: for actions whose outcome the API says in words ("1 successful, 0 failed")
export function apiMessage(method, path, body) {
  return call(method, path, { body });
}

async function call(method, path, { query, body } = {}) {
  const url = new URL("/api/v1" + path, location.origin);
  for (const [name, value] of Object.entries(query || {})) {
    for (const one of [value].flat()) {
      if (one !== undefined && one !== null && one !== "") url.searchParams.append(name, one);
    }
  }
  return request(method, url, session.key, body);
}

// One call of the JSON API with a bearer credential (the dashboard's key, the portal's
// token): {data, message} of the envelope, or an ApiError with the API's own message.
// Shared with the customer portal (portal/api.js).
export async function request(method, url, credential, body) {
  const headers = { Authorization: `Bearer ${credential}` };
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
  return { data: doc.data, message: doc.message || "" };
}

// the routes of one project: p.get("/endpoints", {perPage: 100})
export function projectApi(projectId) {
  const base = `/projects/${encodeURIComponent(projectId)}`;
  return {
    get: (path, query) => api("GET", base + path, { query }),
    post: (path, body, query) => api("POST", base + path, { body, query }),
    put: (path, body) => api("PUT", base + path, { body }),
    del: (path) => api("DELETE", base + path),
    // the whole envelope's message too, for actions whose answer is only a message
    send: (method, path, body) => apiMessage(method, base + path, body),
  };
}
