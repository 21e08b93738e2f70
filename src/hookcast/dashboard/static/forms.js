// Form helpers shared by the working pages: labels bound to their controls, one place per
// form where the outcome is said (a status) or the API's refusal is shown (an alert), an
// inline confirmation for what cannot be undone, and secrets shown once.
import { errorBox, fill, h } from "./dom.js";

let seq = 0;
const nextId = (prefix) => `${prefix}-${++seq}`;

// a labelled control: <label for> bound to the control's id; a hint is its description
export function field(label, control, hint) {
  if (!control.id) control.id = nextId(control.name || "field");
  const help = hint ? h("small", { class: "hint", id: `${control.id}-hint` }, hint) : null;
  if (help) control.setAttribute("aria-describedby", help.id);
  return h("div", { class: "field" }, h("label", { for: control.id }, label), control, help);
}

// a checkbox with its label after it and a sentence saying what it does
export function checkField(label, input, hint) {
  if (!input.id) input.id = nextId(input.name || "check");
  const help = hint ? h("small", { class: "hint", id: `${input.id}-hint` }, hint) : null;
  if (help) input.setAttribute("aria-describedby", help.id);
  return h("div", { class: "field check" }, h("div", { class: "check-row" }, input, h("label", { for: input.id }, label)), help);
}

export const input = (name, attrs = {}) => h("input", { name, type: "text", autocomplete: "off", ...attrs });
export const textarea = (name, value, attrs = {}) => h("textarea", { name, rows: 4, class: "mono", spellcheck: "false", ...attrs }, value);
export function select(name, options, value) {
  return h("select", { name }, options.map(([v, text]) => h("option", { value: v, selected: v === value }, text)));
}

// where a form says how it went: a polite status for what worked, an alert for a refusal
// (the API's own message, never swallowed)
export function feedback() {
  const status = h("div", { class: "notice", role: "status", "aria-live": "polite" });
  const problem = h("div", { class: "problem" });
  const el = h("div", { class: "feedback" }, status, problem);
  return {
    el,
    clear() {
      fill(status);
      fill(problem);
    },
    ok(...nodes) {
      fill(problem);
      fill(status, nodes);
      status.classList.toggle("shown", nodes.length > 0);
    },
    fail(err) {
      fill(status);
      status.classList.remove("shown");
      fill(problem, errorBox(err));
    },
  };
}

// a control that is busy: aria-disabled, not disabled, so that it keeps the keyboard focus
export function setBusy(control, on) {
  if (!control) return;
  if (on) control.setAttribute("aria-disabled", "true");
  else control.removeAttribute("aria-disabled");
}
export const isBusy = (control) => control?.getAttribute("aria-disabled") === "true";

// run an action from a form or a button: its control busy meanwhile (a second press does
// nothing), its refusal shown
export async function act(control, box, fn) {
  if (isBusy(control)) return;
  setBusy(control, true);
  box.clear();
  try {
    await fn();
  } catch (err) {
    box.fail(err);
  } finally {
    setBusy(control, false);
  }
}

// a form whose submit runs fn(form) through act(); Enter in a field submits it
export function form(attrs, children, box, fn) {
  const el = h("form", { novalidate: true, ...attrs }, children, box.el);
  el.addEventListener("submit", (e) => {
    e.preventDefault();
    const submit = el.querySelector("button[type=submit]");
    act(submit, box, () => fn(el));
  });
  return el;
}

// text -> JSON, or an error naming the field ("Sample body is not valid JSON: …")
export function parseJson(text, what, fallback = undefined) {
  if (!text.trim()) {
    if (fallback !== undefined) return fallback;
    throw new Error(`${what} is empty: write JSON, e.g. {}`);
  }
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new Error(`${what} is not valid JSON: ${err.message}`);
  }
}

export function jsonObject(text, what) {
  const value = parseJson(text, what, {});
  if (value === null || typeof value !== "object" || Array.isArray(value)) {
    throw new Error(`${what} must be a JSON object, like {"type": "paid"}`);
  }
  return value;
}

// a whole number from an input, or null when it is empty
export function number(el, what) {
  const text = el.value.trim();
  if (!text) return null;
  const n = Number(text);
  if (!Number.isInteger(n) || n < 0) throw new Error(`${what} must be a whole number of 0 or more`);
  return n;
}

// a button that asks first: "Delete" shows "Delete X? [Yes, delete] [Cancel]", its Yes
// focused; Escape or Cancel goes back to the button
export function confirmed(label, question, yesLabel, cls, onYes) {
  const button = h("button", { type: "button", class: `danger ${cls}` }, label);
  const yes = h("button", { type: "button", class: `danger confirm-${cls}` }, yesLabel);
  const no = h("button", { type: "button", class: "cancel" }, "Cancel");
  const group = h("span", { class: "confirm", role: "group", "aria-label": question, hidden: true },
    h("span", {}, question), yes, no);
  button.addEventListener("click", () => {
    group.hidden = false;
    button.hidden = true;
    yes.focus();
  });
  no.addEventListener("click", () => {
    group.hidden = true;
    button.hidden = false;
    button.focus();
  });
  group.addEventListener("keydown", (e) => {
    if (e.key === "Escape") no.click();
  });
  yes.addEventListener("click", () => onYes(yes));
  return h("span", { class: "confirmable" }, button, group);
}

// a secret or a link shown once: read-only, selected on focus, with a Copy button
export function shownOnce(label, value, cls) {
  const box = h("input", { type: "text", readonly: true, value, class: `mono once ${cls}`, "aria-label": label });
  box.addEventListener("focus", () => box.select());
  const copied = h("span", { class: "muted small copied" }); // said by the live region around it
  const copy = h("button", {
    type: "button",
    class: "copy",
    async onclick() {
      box.select();
      try {
        await navigator.clipboard.writeText(value);
        copied.textContent = "Copied.";
      } catch {
        copied.textContent = "Select the text and copy it (Ctrl+C): this browser refused.";
      }
    },
  }, "Copy");
  return h("div", { class: `shown-once ${cls}-box` },
    h("strong", {}, label),
    h("div", { class: "copy-row" }, box, copy, copied),
    h("p", { class: "muted small" }, "Shown this once: copy it now, it cannot be shown again."));
}
