// The provider's theme, from query parameters restricted to safe values.
//
// Each parameter sets one CSS custom property through the CSSOM, and only when its value
// is a plain colour (#rgb, #rgba, #rrggbb, #rrggbbaa or a colour keyword) or, for the
// font, a list of family names (letters, digits, spaces, commas, hyphens). Free CSS is
// never taken: this page holds a bearer token and signing secrets, and injected CSS can
// read them out (attribute selectors with url() requests), hide or fake parts of the page
// and load things from elsewhere. A value that does not pass is ignored.
const COLOUR = /^(#[0-9a-f]{3,4}|#[0-9a-f]{6}|#[0-9a-f]{8}|[a-z]{3,30})$/i;
const FONT = /^[a-z0-9][a-z0-9 ,-]{0,99}$/i;
const KEYWORDS = new Set(["inherit", "initial", "unset", "revert", "revert-layer", "currentcolor"]);

export const THEME_PARAMS = {
  accent: ["--portal-accent", "colour"],
  onAccent: ["--portal-on-accent", "colour"],
  bg: ["--portal-bg", "colour"],
  fg: ["--portal-fg", "colour"],
  font: ["--portal-font", "font"],
};

export function safeValue(kind, value) {
  if (kind === "font") return FONT.test(value) ? value : null;
  if (!COLOUR.test(value) || KEYWORDS.has(value.toLowerCase())) return null;
  return CSS.supports("color", value) ? value : null;
}

// the theme of these query parameters, applied to the document
export function applyTheme(params, root = document.documentElement) {
  for (const [param, [property, kind]] of Object.entries(THEME_PARAMS)) {
    const value = params.get(param);
    if (!value) continue;
    const safe = safeValue(kind, value.trim());
    if (safe) root.style.setProperty(property, safe);
  }
  // the heading: plain text, never markup
  const title = (params.get("title") || "").trim().slice(0, 80);
  if (title) {
    document.getElementById("title").textContent = title;
    document.title = title;
  }
}
