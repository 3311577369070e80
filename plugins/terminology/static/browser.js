// The code browser: typeahead over a code system ($expand?filter=), then the chosen concept
// with $lookup (display, properties, parents and children to walk the hierarchy).
// Data comes from the FHIR API with the signed-in user's token; terms are inserted as text.
import { fhirGet, el } from "/ui/static/fhir.js";

const systemSelect = document.getElementById("system");
const filterInput = document.getElementById("filter");
const status = document.getElementById("status");
let pending = null;

function parts(parameter) {
  return Object.fromEntries((parameter.part || []).map((p) => {
    const key = Object.keys(p).find((k) => k.startsWith("value"));
    return [p.name, p[key]];
  }));
}

async function search() {
  const text = filterInput.value.trim();
  const results = document.getElementById("results");
  if (pending) pending.abort();
  if (text.length < 2) { results.replaceChildren(); status.textContent = ""; return; }
  pending = new AbortController();
  const url = `/ValueSet/$expand?url=${encodeURIComponent(systemSelect.value + "?fhir_vs")}` +
    `&filter=${encodeURIComponent(text)}&count=25`;
  try {
    const expansion = await fhirGet(url, { signal: pending.signal });
    const contains = expansion.expansion.contains || [];
    status.textContent = `${expansion.expansion.total} matches`;
    results.replaceChildren(...contains.map((c) => {
      const item = el("li", {}, el("span", { className: "code" }, c.code), c.display || "");
      if (c.abstract) item.classList.add("abstract");
      item.addEventListener("click", () => show(c.code));
      return item;
    }));
  } catch (error) {
    if (error.name !== "AbortError") status.textContent = `Search failed: ${error.message}`;
  }
}

async function show(code) {
  const system = systemSelect.value;
  const out = await fhirGet(`/CodeSystem/$lookup?system=${encodeURIComponent(system)}&code=${encodeURIComponent(code)}`);
  const params = out.parameter || [];
  const display = (params.find((p) => p.name === "display") || {}).valueString || "";
  document.getElementById("title").textContent = `${code} ${display}`;
  const props = params.filter((p) => p.name === "property").map(parts);
  const concept = document.getElementById("concept");
  concept.replaceChildren(...props.filter((p) => p.code !== "parent" && p.code !== "child")
    .flatMap((p) => [el("dt", {}, p.code), el("dd", {}, String(p.value))]));
  const link = (c) => { const li = el("li", {}, el("span", { className: "code" }, c)); li.addEventListener("click", () => show(c)); return li; };
  document.getElementById("trail").replaceChildren(...props.filter((p) => p.code === "parent").map((p) => link(p.value)));
  document.getElementById("children").replaceChildren(...props.filter((p) => p.code === "child").map((p) => link(p.value)));
}

let timer = null;
filterInput.addEventListener("input", () => { clearTimeout(timer); timer = setTimeout(search, 150); });
systemSelect.addEventListener("change", search);
