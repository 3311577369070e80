// Dashboard: resource counts from `_summary=count` searches and the latest changes from the
// system history (http://hl7.org/fhir/R4/http.html#history), newest first.
import {
  clear,
  describe,
  el,
  fhirGet,
  formatDate,
  message,
  patientHref,
  patientIdOf,
} from "./fhir.js";

const RECENT = 15;

async function loadCount(node) {
  try {
    const bundle = await fhirGet(`${node.dataset.countType}?_summary=count`);
    node.textContent = String(bundle.total ?? "?");
  } catch (error) {
    node.textContent = "–";
    node.title = error.message;
  }
}

function action(entry) {
  const method = (entry.request || {}).method;
  if (method === "DELETE") return "Deleted";
  if (method === "POST") return "Created";
  return "Updated";
}

async function loadRecent(container) {
  try {
    const bundle = await fhirGet(`_history?_count=${RECENT}`);
    const entries = bundle.entry || [];
    if (!entries.length) {
      clear(container).append(message("Nothing has been stored yet."));
      return;
    }
    const rows = entries.map((entry) => {
      const resource = entry.resource;
      const [type, id] = (entry.fullUrl || "").split("/").slice(-2);
      const text = resource ? describe(resource) : { title: "" };
      const patientId = resource ? patientIdOf(resource) : null;
      const label = `${type}/${id}`;
      return el(
        "tr",
        {},
        el("td", { text: formatDate((entry.response || {}).lastModified) }),
        el("td", { text: action(entry) }),
        el("td", {}, patientId ? el("a", { href: patientHref(patientId), text: label }) : label),
        el("td", { text: text.title }),
      );
    });
    const table = el(
      "table",
      { className: "data", id: "recent-table" },
      el("thead", {}, el("tr", {}, ...["When", "Change", "Resource", "Summary"].map((h) => el("th", { text: h })))),
      el("tbody", {}, rows),
    );
    clear(container).append(table);
  } catch (error) {
    clear(container).append(message(`Could not load the history: ${error.message}`, "error"));
  }
}

document.querySelectorAll("[data-count-type]").forEach(loadCount);
const recent = document.getElementById("recent-activity");
if (recent) loadRecent(recent);
