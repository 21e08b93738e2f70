// Small SVG charts, drawn from numbers kept in the page (no library).
const NS = "http://www.w3.org/2000/svg";

function svg(tag, attrs = {}, text) {
  const el = document.createElementNS(NS, tag);
  for (const [name, value] of Object.entries(attrs)) el.setAttribute(name, String(value));
  if (text !== undefined) el.textContent = text;
  return el;
}

// a round step (1, 2 or 5 times a power of ten) that cuts 0..max into about n parts
function niceStep(max, n) {
  const raw = Math.max(max, 1e-9) / n;
  const power = 10 ** Math.floor(Math.log10(raw));
  return [1, 2, 5, 10].map((m) => m * power).find((step) => step >= raw);
}

// a time axis' label: milliseconds under a second ("14 ms"), seconds above ("2.5 s")
function duration(seconds, end) {
  return end < 1 ? `${Number((seconds * 1000).toFixed(3))} ms` : `${Number(seconds.toFixed(3))} s`;
}

// a dot on every point of a line with at most this many (beyond, the line alone)
const DOTS = 40;

// lines: [{points: [[seconds, value], ...], cls: "ok"}]; the axes start at 0
export function lineChart(lines, { yMax = 1, xMax = 10, width = 640, height = 250, yLabel = "", id, label } = {}) {
  const pad = { left: 48, right: 28, top: 26, bottom: 30 };
  const yStep = Math.max(1, niceStep(yMax, 4));
  const xStep = niceStep(xMax, 5);
  const yTop = Math.ceil(yMax / yStep) * yStep;
  const xEnd = Math.ceil(xMax / xStep) * xStep;
  const w = width - pad.left - pad.right;
  const ht = height - pad.top - pad.bottom;
  const x = (s) => pad.left + (w * s) / xEnd;
  const y = (v) => pad.top + ht - (ht * v) / yTop;
  const root = svg("svg", { viewBox: `0 0 ${width} ${height}`, class: "chart", role: "img" });
  if (id) root.setAttribute("id", id);
  if (label) root.setAttribute("aria-label", label);
  for (let v = 0; v <= yTop; v += yStep) {
    root.append(
      svg("line", { x1: pad.left, x2: width - pad.right, y1: y(v), y2: y(v), class: "grid" }),
      svg("text", { x: pad.left - 6, y: y(v) + 4, class: "tick", "text-anchor": "end" }, v),
    );
  }
  for (let i = 0; i * xStep <= xEnd * (1 + 1e-9); i += 1) {
    const s = i * xStep;
    root.append(svg("text", { x: x(s), y: height - 10, class: "tick x", "text-anchor": "middle" }, duration(s, xEnd)));
  }
  root.append(
    svg("line", { x1: pad.left, x2: pad.left, y1: pad.top, y2: pad.top + ht, class: "axis" }),
    svg("line", { x1: pad.left, x2: width - pad.right, y1: pad.top + ht, y2: pad.top + ht, class: "axis" }),
    svg("text", { x: pad.left, y: 12, class: "tick", "text-anchor": "middle" }, yLabel),
  );
  for (const line of lines) {
    if (!line.points.length) continue;
    const d = line.points.map(([s, v], i) => `${i ? "L" : "M"}${x(s).toFixed(1)},${y(v).toFixed(1)}`).join(" ");
    root.append(svg("path", { d, class: `series ${line.cls}` }));
    if (line.points.length > DOTS) continue;
    for (const [s, v] of line.points) root.append(svg("circle", { cx: x(s), cy: y(v), r: 3, class: `dot ${line.cls}` }));
  }
  return root;
}

// bars: [["p50", 12.5], ...] drawn horizontally, in ms
export function barChart(bars, { width = 640, unit = "ms" } = {}) {
  const row = 28;
  const height = bars.length * row + 8;
  const left = 48;
  const max = Math.max(1, ...bars.map(([, v]) => v || 0));
  const root = svg("svg", { viewBox: `0 0 ${width} ${height}`, class: "chart bars", role: "img" });
  bars.forEach(([name, v], i) => {
    const top = 4 + i * row;
    const len = ((width - left - 90) * (v || 0)) / max;
    root.append(
      svg("text", { x: left - 8, y: top + 16, class: "tick", "text-anchor": "end" }, name),
      svg("rect", { x: left, y: top + 3, width: Math.max(len, 1), height: row - 10, rx: 3, class: `bar ${name}` }),
      svg("text", { x: left + len + 8, y: top + 16, class: "value" }, v === null || v === undefined ? "—" : `${v.toFixed(1)} ${unit}`),
    );
  });
  return root;
}
