// Vital signs over time as small hand-written SVG line charts (no chart library).
// Codes follow the R4 vital signs profiles (http://hl7.org/fhir/R4/observation-vitalsigns.html):
// blood pressure arrives as a panel (85354-9, or Synthea's 55284-4) whose components carry
// systolic 8480-6 and diastolic 8462-4; the others are single valueQuantity observations.
import { el, formatDate } from "./fhir.js";

const SVG = "http://www.w3.org/2000/svg";
const LOINC = "http://loinc.org";

export const CHARTS = [
  { id: "bp", title: "Blood pressure", unit: "mmHg", series: [["Systolic", "8480-6"], ["Diastolic", "8462-4"]] },
  { id: "heart-rate", title: "Heart rate", unit: "/min", series: [["Heart rate", "8867-4"]] },
  { id: "weight", title: "Body weight", unit: "kg", series: [["Weight", "29463-7"]] },
  { id: "height", title: "Body height", unit: "cm", series: [["Height", "8302-2"]] },
  { id: "temperature", title: "Body temperature", unit: "°C", series: [["Temperature", "8310-5"]] },
  { id: "bmi", title: "Body mass index", unit: "kg/m²", series: [["BMI", "39156-5"]] },
  { id: "respiratory-rate", title: "Respiratory rate", unit: "/min", series: [["Respiratory rate", "9279-1"]] },
  { id: "spo2", title: "Oxygen saturation", unit: "%", series: [["SpO2", "2708-6"], ["SpO2 (pulse oximetry)", "59408-5"]] },
];

function loincCodes(concept) {
  return ((concept || {}).coding || []).filter((c) => c.system === LOINC).map((c) => c.code);
}

/** `{loinc code: [{t: Date, v: number, unit, when}]}` from Observations and their components. */
export function pointsByCode(observations) {
  const points = {};
  const add = (codes, quantity, when) => {
    if (!quantity || typeof quantity.value !== "number" || !when) return;
    const t = new Date(when);
    if (Number.isNaN(t.getTime())) return;
    for (const code of codes) {
      (points[code] ||= []).push({ t, v: quantity.value, unit: quantity.unit || quantity.code || "", when });
    }
  };
  for (const obs of observations) {
    if (obs.status === "entered-in-error") continue;
    const when = obs.effectiveDateTime || (obs.effectivePeriod || {}).start || obs.issued;
    add(loincCodes(obs.code), obs.valueQuantity, when);
    for (const component of obs.component || []) {
      add(loincCodes(component.code), component.valueQuantity, when);
    }
  }
  for (const list of Object.values(points)) list.sort((a, b) => a.t - b.t);
  return points;
}

function svg(tag, attrs = {}, text) {
  const node = document.createElementNS(SVG, tag);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, String(value));
  if (text !== undefined) node.textContent = String(text);
  return node;
}

function niceRange(values) {
  let low = Math.min(...values);
  let high = Math.max(...values);
  if (low === high) {
    low -= 1;
    high += 1;
  }
  const pad = (high - low) * 0.1;
  return [low - pad, high + pad];
}

/** Tick labels: as many decimals as the axis span needs to keep them distinct. */
function label(value, span) {
  const decimals = span >= 20 ? 0 : span >= 2 ? 1 : 2;
  return value.toFixed(decimals);
}

/** One line chart: `series` is `[{name, points}]` sharing a unit. Returns an <svg>. */
export function lineChart({ id, title, unit, series }, { width = 360, height = 180 } = {}) {
  const margin = { left: 44, right: 12, top: 14, bottom: 30 };
  const all = series.flatMap((s) => s.points);
  const times = all.map((p) => p.t.getTime());
  let [t0, t1] = [Math.min(...times), Math.max(...times)];
  if (t0 === t1) {
    t0 -= 86400000;
    t1 += 86400000;
  }
  const [v0, v1] = niceRange(all.map((p) => p.v));
  const plotW = width - margin.left - margin.right;
  const plotH = height - margin.top - margin.bottom;
  const x = (t) => margin.left + ((t - t0) / (t1 - t0)) * plotW;
  const y = (v) => margin.top + (1 - (v - v0) / (v1 - v0)) * plotH;

  const root = svg("svg", {
    class: "vitals-chart",
    "data-chart": id,
    viewBox: `0 0 ${width} ${height}`,
    width,
    height,
    role: "img",
    "aria-label": `${title} over time`,
  });
  root.append(svg("title", {}, `${title} (${unit})`));
  const ticks = 4;
  for (let i = 0; i <= ticks; i += 1) {
    const value = v0 + ((v1 - v0) * i) / ticks;
    root.append(svg("line", { class: "grid", x1: margin.left, x2: width - margin.right, y1: y(value), y2: y(value) }));
    root.append(svg("text", { class: "tick", x: margin.left - 6, y: y(value) + 4, "text-anchor": "end" }, label(value, v1 - v0)));
  }
  const first = new Date(t0 + (all.length > 1 ? 0 : 86400000));
  const last = new Date(t1 - (all.length > 1 ? 0 : 86400000));
  root.append(svg("text", { class: "tick", x: margin.left, y: height - 10 }, formatDate(first.toISOString()).slice(0, 7)));
  root.append(
    svg("text", { class: "tick", x: width - margin.right, y: height - 10, "text-anchor": "end" }, formatDate(last.toISOString()).slice(0, 7)),
  );
  series.forEach((s, index) => {
    if (!s.points.length) return;
    const path = s.points.map((p) => `${x(p.t.getTime()).toFixed(1)},${y(p.v).toFixed(1)}`).join(" ");
    root.append(svg("polyline", { class: `line series-${index}`, points: path, fill: "none" }));
    for (const p of s.points) {
      const dot = svg("circle", {
        class: `point series-${index}`,
        cx: x(p.t.getTime()).toFixed(1),
        cy: y(p.v).toFixed(1),
        r: 3.5,
        "data-value": p.v,
        "data-when": p.when,
      });
      dot.append(svg("title", {}, `${s.name} ${formatDate(p.when)}: ${p.v} ${p.unit}`));
      root.append(dot);
    }
  });
  if (series.length > 1) {
    series.forEach((s, index) => {
      root.append(svg("text", { class: `legend series-${index}`, x: margin.left + 8 + index * 90, y: margin.top + 2 }, s.name));
    });
  }
  return root;
}

/** The vital-signs panel body: one chart per measured vital sign plus the latest values. */
export function vitalsView(observations) {
  const points = pointsByCode(observations);
  const figures = [];
  const latest = [];
  for (const chart of CHARTS) {
    const series = chart.series
      .map(([name, code]) => ({ name, points: points[code] || [] }))
      .filter((s) => s.points.length);
    if (!series.length) continue;
    figures.push(el("figure", { className: "chart" }, el("figcaption", { text: `${chart.title} (${chart.unit})` }), lineChart({ ...chart, series })));
    const values = series.map((s) => s.points[s.points.length - 1]);
    latest.push(
      el(
        "tr",
        {},
        el("td", { text: chart.title }),
        el("td", { text: values.map((p) => p.v).join(" / ") + ` ${values[0].unit}` }),
        el("td", { text: formatDate(values[0].when) }),
      ),
    );
  }
  if (!figures.length) return [el("p", { className: "muted", text: "No vital signs recorded" })];
  return [
    el("div", { className: "charts" }, figures),
    el(
      "table",
      { className: "data latest" },
      el("thead", {}, el("tr", {}, ["Latest", "Value", "When"].map((h) => el("th", { text: h })))),
      el("tbody", {}, latest),
    ),
  ];
}
