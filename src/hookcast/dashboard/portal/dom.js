// Tiny DOM helpers: elements are built, never parsed from strings (payloads, URLs and
// names come from the API and are untrusted).

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

function append(el, children) {
  for (const child of children) {
    if (child === undefined || child === null || child === false) continue;
    if (Array.isArray(child)) append(el, child);
    else el.append(child instanceof Node ? child : String(child));
  }
}

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

export function badge(text, kind = String(text).toLowerCase()) {
  return h("span", { class: `badge ${kind}` }, text);
}

// "2024-05-01T12:00:03.123456Z" -> "2024-05-01 12:00:03 UTC"
export function when(iso) {
  return iso ? iso.slice(0, 19).replace("T", " ") + " UTC" : "—";
}

export function code(value) {
  const text = typeof value === "string" ? value : JSON.stringify(value, null, 2);
  return h("pre", { class: "code", tabindex: "0" }, text ?? "");
}

export function kv(pairs) {
  return h(
    "dl",
    { class: "kv" },
    pairs.map(([name, value]) => [h("dt", {}, name), h("dd", {}, value ?? "—")]),
  );
}
