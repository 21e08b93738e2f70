// The JSON API, called with the portal link's token (kept for this tab only: the page
// takes it out of the address bar as soon as it has read it).
import { ApiError, request } from "/dashboard/api.js";

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

// ApiError and the call itself are the dashboard's (one envelope parser for both pages)
export { ApiError };

// api("GET", "/endpoints", {query: {perPage: 20}}) -> the envelope's data, for the
// link's project
export async function api(method, path, { query, body } = {}) {
  const base = `/api/v1/projects/${encodeURIComponent(session.project)}`;
  const url = new URL(base + path, location.origin);
  for (const [name, value] of Object.entries(query || {})) {
    if (value !== undefined && value !== null && value !== "") url.searchParams.append(name, value);
  }
  return (await request(method, url, session.token, body)).data;
}

export const get = (path, query) => api("GET", path, { query });
export const post = (path, body) => api("POST", path, { body });
export const put = (path, body) => api("PUT", path, { body });
export const del = (path) => api("DELETE", path);
