// The knowledge graph view: $graph (from a code) and Patient/{id}/$knowledge (from a chart)
// in their compact JSON form, drawn with the vendored Cytoscape.js. Text from the data is set
// as text (el(), Cytoscape labels), never as HTML.
import { fhirGet, el, clear } from "/ui/static/fhir.js";

const COLOURS = {
  Diagnosis: "#3465a4", Medication: "#4e9a06", Symptom: "#c4a000",
  SideEffect: "#ce5c00", Treatment: "#75507b",
};
const status = document.getElementById("status");
const details = document.getElementById("details");
let cy = null;

function draw(data) {
  const elements = [
    ...data.nodes.map((n) => ({ data: { id: n.id, label: n.label, kind: n.kind, start: n.start } })),
    ...data.edges.map((e, i) => ({
      data: { id: `e${i}`, source: e.source, target: e.target, label: e.kind, edge: e },
    })),
  ];
  if (cy) cy.destroy();
  cy = window.cytoscape({
    container: document.getElementById("graph"),
    elements,
    style: [
      { selector: "node", style: {
        label: "data(label)", "font-size": 10, width: 14, height: 14,
        "background-color": (n) => COLOURS[n.data("kind")] || "#888" } },
      { selector: "node[?start]", style: { width: 24, height: 24, "border-width": 3 } },
      { selector: "edge", style: {
        label: "data(label)", "font-size": 7, width: 1, "curve-style": "bezier",
        "target-arrow-shape": "triangle", "line-color": "#aab", "target-arrow-color": "#aab" } },
    ],
    layout: { name: "cose", animate: false },
  });
  cy.on("tap", "edge", (event) => showEdge(event.target.data("edge")));
  status.textContent = `${data.nodes.length} nodes, ${data.edges.length} edges`
    + (data.truncated ? " (limit reached)" : "");
}

function showEdge(e) {
  clear(details);
  details.append(
    el("h2", {}, `${e.kind} ${e.severity ? "(" + e.severity + ")" : ""}`),
    el("p", {}, e.text || ""),
    el("p", { className: "muted" }, `Source: ${e.origin}; evidence: ${e.evidence}; ${e.id}`),
  );
  if (e.management) details.append(el("p", {}, `Recommendation: ${e.management}`));
}

function showFindings(data) {
  clear(details);
  details.append(el("h2", {}, "Findings"));
  if (!data.findings.length) details.append(el("p", { className: "muted" }, "None from the loaded sources."));
  for (const f of data.findings) {
    details.append(el("p", { className: f.severity }, `${f.severity}: ${f.summary}. ${f.detail}`));
  }
}

async function run(path, after) {
  status.textContent = "Loading…";
  try {
    const data = await fhirGet(path);
    draw(data);
    if (after) after(data);
  } catch (error) {
    status.textContent = String(error.message || error);
  }
}

document.getElementById("by-code").addEventListener("submit", (event) => {
  event.preventDefault();
  const form = new FormData(event.target);
  const params = new URLSearchParams({ view: "compact" });
  for (const name of ["start", "edge", "direction", "depth", "target"]) {
    if (form.get(name)) params.set(name, form.get(name));
  }
  run(`$graph?${params}`);
});

document.getElementById("by-patient").addEventListener("submit", (event) => {
  event.preventDefault();
  const id = new FormData(event.target).get("patient");
  if (id) run(`Patient/${encodeURIComponent(id)}/$knowledge?view=compact`, showFindings);
});

const query = new URLSearchParams(location.search);
if (query.get("patient")) {
  document.querySelector("#by-patient input").value = query.get("patient");
  run(`Patient/${encodeURIComponent(query.get("patient"))}/$knowledge?view=compact`, showFindings);
} else if (query.get("start")) {
  document.querySelector("#by-code input[name=start]").value = query.get("start");
  run(`$graph?view=compact&start=${encodeURIComponent(query.get("start"))}`);
}
