// Scroll through a series' rendered frames (WADO-RS), with CT window/level presets, and the
// graphic annotations of the study's presentation states (GSPS) and its structured reports'
// regions drawn over each image.
import { authHeaders, signIn } from "/ui/static/fhir.js";
import { authorizedImage } from "./images.js";

const root = document.getElementById("viewer");
const web = `${root.dataset.prefix}/dicomweb`;
const params = new URLSearchParams(location.search);
const study = params.get("study");
const series = params.get("series");
const image = document.getElementById("frame");
const slider = document.getElementById("slider");
const position = document.getElementById("position");
const overlay = document.getElementById("overlay");
const toggle = document.getElementById("show-annotations");
const annotationList = document.getElementById("annotation-list");
const SVG = "http://www.w3.org/2000/svg";
let instances = [];
let windowPreset = "";

function number(instance) {
  const value = instance["00200013"];
  return value && value.Value ? Number(value.Value[0]) : 0;
}

function show(index) {
  if (!instances.length) return;
  const i = Math.max(0, Math.min(instances.length - 1, index));
  slider.value = String(i);
  const sop = instances[i]["00080018"].Value[0];
  const query = windowPreset ? `?window=${encodeURIComponent(windowPreset)}` : "";
  authorizedImage(image, `${web}/studies/${study}/series/${series}/instances/${sop}/rendered${query}`);
  image.dataset.index = String(i);
  image.dataset.sop = sop;
  position.textContent = `${i + 1} / ${instances.length}`;
  annotate(sop).catch((error) => { annotationList.textContent = error.message; });
}

function svg(name, attributes) {
  const element = document.createElementNS(SVG, name);
  for (const [key, value] of Object.entries(attributes)) element.setAttribute(key, String(value));
  return element;
}

// PIXEL units are the image's own (0,0 = top left corner, Columns\Rows = bottom right, PS3.3
// C.10.5.1.2); DISPLAY units are fractions of the displayed area, here the whole image.
function toPixels(points, units, columns, rows) {
  return units === "DISPLAY" ? points.map(([x, y]) => [x * columns, y * rows]) : points;
}

function graphic(item, columns, rows) {
  const points = toPixels(item.points, item.units, columns, rows);
  const cls = item.filled ? "filled" : "";
  if (item.type === "POINT" && points.length) return svg("circle", { cx: points[0][0], cy: points[0][1], r: Math.max(1, columns / 200), class: cls });
  if (item.type === "CIRCLE" && points.length === 2) {
    const [[cx, cy], [px, py]] = points;
    return svg("circle", { cx, cy, r: Math.hypot(px - cx, py - cy), class: cls });
  }
  if (item.type === "ELLIPSE" && points.length === 4) {
    const [a, b, c, d] = points;
    const angle = (Math.atan2(b[1] - a[1], b[0] - a[0]) * 180) / Math.PI;
    return svg("ellipse", {
      cx: (a[0] + b[0]) / 2, cy: (a[1] + b[1]) / 2,
      rx: Math.hypot(b[0] - a[0], b[1] - a[1]) / 2, ry: Math.hypot(d[0] - c[0], d[1] - c[1]) / 2,
      transform: `rotate(${angle} ${(a[0] + b[0]) / 2} ${(a[1] + b[1]) / 2})`, class: cls,
    });
  }
  // POLYLINE and INTERPOLATED (drawn through its points)
  const line = svg("polyline", { points: points.map((p) => p.join(",")).join(" "), class: cls });
  if (item.layer) line.dataset.layer = item.layer;
  return line;
}

let annotating = 0;
async function annotate(sop) {
  const request = ++annotating;
  const response = await fetch(`${root.dataset.prefix}/annotations/studies/${study}/series/${series}/instances/${sop}`, { headers: authHeaders() });
  if (response.status === 401) signIn();
  if (request !== annotating) return;
  overlay.replaceChildren();
  annotationList.replaceChildren();
  const data = response.ok ? await response.json() : { presentationStates: [], columns: 0, rows: 0 };
  if (request !== annotating) return;
  const { columns, rows } = data;
  overlay.setAttribute("viewBox", `0 0 ${columns || 1} ${rows || 1}`);
  for (const state of data.presentationStates) {
    const group = svg("g", { "data-presentation-state": state.sopInstanceUID });
    for (const item of state.graphics) group.append(graphic(item, columns, rows));
    for (const item of state.texts) {
      const at = item.anchor || (item.box && item.box.slice(0, 2));
      if (!at) continue;
      const [[x, y]] = toPixels([at], item.units, columns, rows);
      const text = svg("text", { x, y, "font-size": Math.max(8, columns / 28), "data-layer": item.layer });
      text.textContent = item.text;
      group.append(text);
    }
    overlay.append(group);
    const entry = document.createElement("li");
    const layers = state.layers.map((layer) => layer.name).join(", ") || "(no layer)";
    const name = state.label || state.description || state.sopInstanceUID;
    entry.textContent = `${name}${state.seriesNumber != null ? ` (series ${state.seriesNumber})` : ""}, layer ${layers}: ${state.graphics.length} graphic(s), ${state.texts.length} text(s)`;
    annotationList.append(entry);
  }
  // the regions of structured reports (TID 1500 planar ROIs), each with its group's text
  for (const report of data.structuredReports || []) {
    const group = svg("g", { "data-structured-report": report.sopInstanceUID, class: "sr" });
    for (const region of report.regions) {
      group.append(graphic(region, columns, rows));
      if (!region.text || !region.points.length) continue;
      const x = Math.min(...region.points.map((p) => p[0]));
      const y = Math.max(...region.points.map((p) => p[1]));
      const text = svg("text", { x, y: y + Math.max(8, columns / 28), "font-size": Math.max(8, columns / 28) });
      text.textContent = region.text;
      group.append(text);
    }
    overlay.append(group);
    const entry = document.createElement("li");
    const name = report.description || report.sopInstanceUID;
    entry.textContent = `Structured report ${name}${report.seriesNumber != null ? ` (series ${report.seriesNumber})` : ""}: ${report.regions.length} region(s)`;
    annotationList.append(entry);
  }
  document.getElementById("annotations").hidden = annotationList.children.length === 0;
  overlay.dataset.image = sop;
}

async function main() {
  const response = await fetch(`${web}/studies/${study}/series/${series}/instances`, { headers: { Accept: "application/dicom+json", ...authHeaders() } });
  if (response.status === 401) signIn();
  if (!response.ok) throw new Error(`QIDO-RS: HTTP ${response.status}`);
  instances = (response.status === 204 ? [] : await response.json()).sort((a, b) => number(a) - number(b));
  slider.max = String(Math.max(0, instances.length - 1));
  const modality = instances.length && instances[0]["00080060"] ? instances[0]["00080060"].Value[0] : "";
  document.getElementById("title").textContent = `Series ${series} ${modality}`;
  document.getElementById("presets").hidden = modality !== "CT";
  show(0);
}

toggle.addEventListener("change", () => { overlay.style.display = toggle.checked ? "" : "none"; });
slider.addEventListener("input", () => show(Number(slider.value)));
image.addEventListener("wheel", (event) => { event.preventDefault(); show(Number(slider.value) + Math.sign(event.deltaY)); });
document.addEventListener("keydown", (event) => {
  if (event.key === "ArrowRight" || event.key === "ArrowDown") show(Number(slider.value) + 1);
  if (event.key === "ArrowLeft" || event.key === "ArrowUp") show(Number(slider.value) - 1);
});
document.getElementById("presets").addEventListener("click", (event) => {
  const button = event.target.closest("button");
  if (!button) return;
  windowPreset = button.dataset.window;
  for (const other of document.querySelectorAll("#presets button")) other.setAttribute("aria-pressed", String(other === button));
  show(Number(slider.value));
});

main().catch((error) => { position.textContent = error.message; });
