// The global patient search bar: as the user types (debounced), query the FHIR API by name,
// birth date or identifier, whichever the text can be, and list the merged matches.
import { clear, debounce, el, fhirGet, humanName, matches, mrn, patientHref } from "./fhir.js";

const DEBOUNCE_MS = 250;
const LIMIT = 10;
const DATE = /^\d{4}(-\d{2}(-\d{2})?)?$/;

/** The Patient searches (http://hl7.org/fhir/R4/patient.html#search) a text can mean. */
export function searchesFor(text) {
  const q = text.trim();
  if (q.length < 2) return [];
  const searches = [];
  const encoded = encodeURIComponent(q);
  if (DATE.test(q)) searches.push(`Patient?birthdate=${encoded}&_count=${LIMIT}`);
  if (/\p{L}/u.test(q)) searches.push(`Patient?name=${encoded}&_count=${LIMIT}`);
  if (/\d/.test(q) && !/\s/.test(q) && !/^\d{4}-/.test(q)) {
    searches.push(`Patient?identifier=${encoded}&_count=${LIMIT}`);
  }
  return searches;
}

function setup() {
  const input = document.getElementById("global-search");
  const list = document.getElementById("search-results");
  if (!input || !list) return;
  let controller = null;
  let generation = 0;
  let active = -1;

  const options = () => Array.from(list.querySelectorAll("[role=option]"));
  const hide = () => {
    list.hidden = true;
    input.setAttribute("aria-expanded", "false");
    active = -1;
  };
  const show = (children) => {
    clear(list).append(...children);
    list.hidden = false;
    input.setAttribute("aria-expanded", "true");
    active = -1;
  };
  const highlight = (index) => {
    const items = options();
    if (!items.length) return;
    active = (index + items.length) % items.length;
    items.forEach((item, i) => item.setAttribute("aria-selected", String(i === active)));
  };

  async function run() {
    const searches = searchesFor(input.value);
    generation += 1;
    const mine = generation;
    if (controller) controller.abort();
    if (!searches.length) {
      hide();
      return;
    }
    controller = new AbortController();
    const { signal } = controller;
    show([el("li", { className: "muted", text: "Searching…" })]);
    try {
      const bundles = await Promise.all(searches.map((s) => fhirGet(s, { signal })));
      if (mine !== generation) return;
      const seen = new Map();
      for (const patient of bundles.flatMap(matches)) seen.set(patient.id, patient);
      const patients = Array.from(seen.values()).slice(0, LIMIT);
      if (!patients.length) {
        show([el("li", { className: "muted", text: "No patient matches" })]);
        return;
      }
      show(
        patients.map((p) =>
          el(
            "li",
            { role: "option", "aria-selected": "false" },
            el(
              "a",
              { href: patientHref(p.id), "data-patient-id": p.id },
              el("strong", { text: humanName(p) }),
              el("span", {
                className: "muted",
                text: [p.birthDate && `born ${p.birthDate}`, mrn(p) && `MRN ${mrn(p)}`, p.gender]
                  .filter(Boolean)
                  .join(" · "),
              }),
            ),
          ),
        ),
      );
    } catch (error) {
      if (error.name === "AbortError" || mine !== generation) return;
      show([el("li", { className: "error", text: `Search failed: ${error.message}` })]);
    }
  }

  const later = debounce(run, DEBOUNCE_MS);
  input.addEventListener("input", later);
  input.addEventListener("keydown", (event) => {
    if (event.key === "ArrowDown") {
      highlight(active + 1);
      event.preventDefault();
    } else if (event.key === "ArrowUp") {
      highlight(active - 1);
      event.preventDefault();
    } else if (event.key === "Enter") {
      const items = options();
      const item = items[active] || items[0];
      const link = item && item.querySelector("a");
      if (link) window.location.assign(link.getAttribute("href"));
      event.preventDefault();
    } else if (event.key === "Escape") {
      hide();
    }
  });
  document.addEventListener("click", (event) => {
    if (!event.target.closest(".search")) hide();
  });
}

setup();
