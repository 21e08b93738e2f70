// Tiny DOM helpers: elements are built, never parsed from strings (payloads are untrusted).

// h("a", {href: "#/x", class: "btn"}, "text", child, [more, children])
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith("on")) el.addEventListener(name.slice(2), value);
    else if (value === true) el.setAttribute(name, "");
    else el.setAttribute(name, String(value));
  }
  append(el, children);
  return el;
}

// children may nest in arrays; null, undefined and false are left out (never "null")
function append(el, children) {
  for (const child of children) {
    if (child === undefined || child === null || child === false) continue;
    if (Array.isArray(child)) append(el, child);
    else el.append(child instanceof Node ? child : String(child));
  }
}

// el's children replaced, by the same rules as h(): use it, never el.replaceChildren()
export function fill(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

// plural(1, "delivery", "deliveries") -> "1 delivery"; plural(2, "event") -> "2 events"
export function plural(n, one, many = `${one}s`) {
  return `${n} ${noun(n, one, many)}`;
}

// the word alone, for a count shown apart: noun(1, "target matched", "targets matched")
export function noun(n, one, many = `${one}s`) {
  return n === 1 ? one : many;
}

export function table(headers, rows, empty = "Nothing here yet.") {
  if (!rows.length) return h("p", { class: "muted empty" }, empty);
  return h(
    "table",
    {},
    h("thead", {}, h("tr", {}, headers.map((name) => h("th", {}, name)))),
    h("tbody", {}, rows),
  );
}

export function badge(text, kind = String(text).toLowerCase()) {
  return h("span", { class: `badge ${kind}` }, text);
}

// "2024-05-01T12:00:03.123456Z" -> "2024-05-01 12:00:03" (UTC, as the API's filters)
export function when(iso) {
  return iso ? iso.slice(0, 19).replace("T", " ") : "—";
}

export function json(value) {
  return h("pre", { class: "code" }, JSON.stringify(value, null, 2));
}

export function errorBox(err) {
  return h("p", { class: "error", role: "alert" }, err.message || String(err));
}

export function kv(pairs) {
  return h(
    "dl",
    { class: "kv" },
    pairs.map(([name, value]) => [h("dt", {}, name), h("dd", {}, value ?? "—")]),
  );
}
