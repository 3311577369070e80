// The patient list, paged with the `next` / `previous` links of the search Bundle
// (http://hl7.org/fhir/R4/http.html#paging) so the server decides how paging works.
import { addressText, clear, el, fhirGet, humanName, matches, mrn, patientHref } from "./fhir.js";

// `?count=N` on the page sets the page size (1-100).
const requested = Math.floor(Number(new URLSearchParams(window.location.search).get("count")));
const PAGE_SIZE = requested >= 1 && requested <= 100 ? requested : 20;

const tbody = document.querySelector("#patient-table tbody");
const status = document.getElementById("page-status");
const previous = document.getElementById("page-previous");
const next = document.getElementById("page-next");
let links = {};
let first = 1;

function row(patient) {
  const address = (patient.address || [])[0];
  return el(
    "tr",
    {},
    el("td", {}, el("a", { href: patientHref(patient.id), text: humanName(patient) })),
    el("td", { text: patient.gender || "" }),
    el("td", { text: patient.birthDate || "" }),
    el("td", { text: mrn(patient) }),
    el("td", { text: address ? address.city || addressText(address) : "" }),
  );
}

async function show(url, start) {
  previous.disabled = next.disabled = true;
  status.textContent = "Loading…";
  try {
    const bundle = await fhirGet(url);
    const patients = matches(bundle);
    links = Object.fromEntries((bundle.link || []).map((l) => [l.relation, l.url]));
    first = start;
    clear(tbody).append(...patients.map(row));
    const last = start + patients.length - 1;
    const total = bundle.total !== undefined ? ` of ${bundle.total}` : "";
    status.textContent = patients.length ? `Patients ${start}–${last}${total}` : "No patients";
    previous.disabled = !links.previous && !links.prev;
    next.disabled = !links.next;
  } catch (error) {
    status.textContent = `Could not load patients: ${error.message}`;
  }
}

previous.addEventListener("click", () => {
  const url = links.previous || links.prev;
  if (url) show(url, Math.max(1, first - PAGE_SIZE));
});
next.addEventListener("click", () => {
  if (links.next) show(links.next, first + PAGE_SIZE);
});

show(`Patient?_count=${PAGE_SIZE}&_sort=family,given`, 1);
