// Tiny DOM helpers: elements are built, never parsed from strings (payloads, URLs and
// names come from the API and are untrusted).

// h(), badge() and kv() are the dashboard's: one builder for both pages
import { h } from "/dashboard/dom.js";

export { badge, h, kv } from "/dashboard/dom.js";

export function table(caption, headers, rows, empty) {
  if (!rows.length) return h("p", { class: "muted empty" }, empty);
  return h(
    "table",
    {},
    h("caption", { class: "visually-hidden" }, caption),
    h("thead", {}, h("tr", {}, headers.map((name) => h("th", { scope: "col" }, name)))),
    h("tbody", {}, rows),
  );
}

// "2024-05-01T12:00:03.123456Z" -> "2024-05-01 12:00:03 UTC"
export function when(iso) {
  return iso ? iso.slice(0, 19).replace("T", " ") + " UTC" : "—";
}

export function code(value) {
  const text = typeof value === "string" ? value : JSON.stringify(value, null, 2);
  return h("pre", { class: "code", tabindex: "0" }, text ?? "");
}
