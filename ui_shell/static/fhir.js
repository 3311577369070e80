// The shell's only way to the hub: the public FHIR REST API (http://hl7.org/fhir/R4/http.html),
// plus small helpers that turn resources into text. Patient data is only ever inserted with
// textContent / text nodes (see el()), never as HTML.

const body = document.body;
export const ROOT = body.dataset.root || "";
export const FHIR_BASE = body.dataset.fhirBase || "/fhir";

export class FhirRequestError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

// Bundle links are absolute URLs built by the server; fetch them from this origin.
function localUrl(path) {
  if (/^https?:\/\//.test(path)) {
    const url = new URL(path);
    return url.pathname + url.search;
  }
  return path.startsWith("/") ? path : `${FHIR_BASE}/${path}`;
}

function outcomeText(data) {
  if (!data || data.resourceType !== "OperationOutcome") return "";
  return (data.issue || []).map((i) => i.diagnostics || i.code).join("; ");
}

/** The Authorization header of the signed-in user (the security plugin's login keeps the
 * access token in sessionStorage); empty when authentication is off. */
export function authHeaders() {
  const token = sessionStorage.getItem("fhirhub.token");
  return token ? { Authorization: `Bearer ${token}` } : {};
}

/** After a 401: sign in (again), then come back to this page. */
export function signIn() {
  const here = window.top.location.pathname + window.top.location.search;
  window.top.location.assign(`${ROOT}/plugins/security/ui/login?next=${encodeURIComponent(here)}`);
}

/** Send a request to the FHIR API as the signed-in user; the JSON answer, or a
 * FhirRequestError carrying the OperationOutcome's text. */
async function fhirRequest(path, { method = "GET", body, signal } = {}) {
  const headers = { Accept: "application/fhir+json", ...authHeaders() };
  if (body !== undefined) headers["Content-Type"] = "application/fhir+json";
  const response = await fetch(localUrl(path), {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    signal,
  });
  if (response.status === 401) {
    sessionStorage.removeItem("fhirhub.token");
    signIn();
  }
  let data = null;
  try {
    data = await response.json();
  } catch (_) {
    data = null;
  }
  if (!response.ok) {
    throw new FhirRequestError(response.status, outcomeText(data) || `HTTP ${response.status}`);
  }
  return data;
}

/** GET a FHIR URL (relative to the FHIR base, rooted, or absolute) as JSON. */
export function fhirGet(path, { signal } = {}) {
  return fhirRequest(path, { signal });
}

/** POST a resource (a create, or an operation's body); the server's answer as JSON. */
export function fhirPost(path, resource) {
  return fhirRequest(path, { method: "POST", body: resource });
}

/** The matches of a search Bundle (not _include-d entries or OperationOutcomes). */
export function matches(bundle) {
  return (bundle.entry || [])
    .filter((e) => e.resource && (!e.search || !e.search.mode || e.search.mode === "match"))
    .map((e) => e.resource);
}

export function nextLink(bundle) {
  const link = (bundle.link || []).find((l) => l.relation === "next");
  return link ? link.url : null;
}

/** All matches of a search, following `next` links (at most `maxPages` pages). */
export async function searchAll(path, maxPages = 20) {
  const resources = [];
  let url = path;
  for (let page = 0; url && page < maxPages; page += 1) {
    const bundle = await fhirGet(url);
    resources.push(...matches(bundle));
    url = nextLink(bundle);
  }
  return resources;
}

// -- DOM ------------------------------------------------------------------------------------

/**
 * Create an element. `props.text` becomes textContent, `props.className` the class, other
 * props become attributes; children are nodes or strings (inserted as text, never as HTML).
 */
export function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "text") node.textContent = String(value);
    else if (key === "className") node.className = value;
    else node.setAttribute(key, String(value));
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

export function clear(node) {
  while (node.firstChild) node.removeChild(node.firstChild);
  return node;
}

export function message(text, className = "muted") {
  return el("p", { className, text });
}

export function patientHref(id) {
  return `${ROOT}/ui/patients/${encodeURIComponent(id)}`;
}

// -- text for resources ---------------------------------------------------------------------

export function humanName(patient) {
  const names = patient.name || [];
  const name = names.find((n) => n.use === "official") || names[0];
  if (!name) return "(no name)";
  if (name.text) return name.text;
  return [...(name.given || []), name.family].filter(Boolean).join(" ") || "(no name)";
}

export function codeText(concept) {
  if (!concept) return "";
  if (concept.text) return concept.text;
  const coding = (concept.coding || [])[0];
  return coding ? coding.display || coding.code || "" : "";
}

export function codingText(coding) {
  return coding ? coding.display || coding.code || "" : "";
}

/** `2024-03-01T09:10:00+00:00` -> `2024-03-01 09:10`; dates stay as they are. */
export function formatDate(value) {
  if (!value) return "";
  const match = /^(\d{4}(?:-\d{2}(?:-\d{2})?)?)(?:T(\d{2}:\d{2}))?/.exec(value);
  if (!match) return value;
  return match[2] ? `${match[1]} ${match[2]}` : match[1];
}

export function age(birthDate, at = new Date()) {
  const match = /^(\d{4})-(\d{2})-(\d{2})$/.exec(birthDate || "");
  if (!match) return null;
  let years = at.getFullYear() - Number(match[1]);
  const month = at.getMonth() + 1;
  if (month < Number(match[2]) || (month === Number(match[2]) && at.getDate() < Number(match[3]))) {
    years -= 1;
  }
  return years;
}

export function quantityText(q) {
  if (!q || q.value === undefined) return "";
  return `${q.comparator || ""}${q.value} ${q.unit || q.code || ""}`.trim();
}

/** The medical record number: the identifier typed MR, else the first identifier. */
export function mrn(patient) {
  const ids = patient.identifier || [];
  const typed = ids.find((i) => ((i.type || {}).coding || []).some((c) => c.code === "MR"));
  const id = typed || ids[0];
  return id ? id.value || "" : "";
}

export function addressText(address) {
  if (!address) return "";
  if (address.text) return address.text;
  return [...(address.line || []), address.city, address.state, address.postalCode, address.country]
    .filter(Boolean)
    .join(", ");
}

export function valueText(resource) {
  if (resource.valueQuantity) return quantityText(resource.valueQuantity);
  if (resource.valueCodeableConcept) return codeText(resource.valueCodeableConcept);
  if (resource.valueString !== undefined) return resource.valueString;
  if (resource.valueBoolean !== undefined) return String(resource.valueBoolean);
  if (resource.valueInteger !== undefined) return String(resource.valueInteger);
  if (resource.component) {
    return resource.component
      .map((c) => valueText(c))
      .filter(Boolean)
      .join(" / ");
  }
  return "";
}

function firstDate(resource, ...names) {
  for (const name of names) {
    const value = name.split(".").reduce((v, part) => (v ? v[part] : undefined), resource);
    if (value) return value;
  }
  return (resource.meta || {}).lastUpdated || "";
}

function statusOf(resource) {
  if (resource.clinicalStatus) return codeText(resource.clinicalStatus);
  return resource.status || "";
}

/** A row for any resource: {date, title, detail, status}. */
export function describe(r) {
  switch (r.resourceType) {
    case "Patient":
      return { date: r.birthDate || "", title: humanName(r), detail: mrn(r), status: r.gender || "" };
    case "Encounter":
      return {
        date: firstDate(r, "period.start"),
        title: codeText((r.type || [])[0]) || codingText(r.class),
        detail: codingText(r.class),
        status: r.status || "",
      };
    case "Condition":
      return {
        date: firstDate(r, "onsetDateTime", "onsetPeriod.start", "recordedDate"),
        title: codeText(r.code),
        detail: r.abatementDateTime ? `resolved ${formatDate(r.abatementDateTime)}` : "",
        status: statusOf(r),
      };
    case "MedicationRequest":
    case "MedicationStatement":
      return {
        date: firstDate(r, "authoredOn", "effectiveDateTime", "effectivePeriod.start", "dateAsserted"),
        title: codeText(r.medicationCodeableConcept) || (r.medicationReference || {}).display || "",
        detail: ((r.dosageInstruction || r.dosage || [])[0] || {}).text || "",
        status: r.status || "",
      };
    case "AllergyIntolerance":
      return {
        date: firstDate(r, "recordedDate", "onsetDateTime"),
        title: codeText(r.code),
        detail: [(r.category || []).join(", "), r.criticality && `criticality ${r.criticality}`]
          .filter(Boolean)
          .join(" · "),
        status: statusOf(r),
      };
    case "Immunization":
      return {
        date: firstDate(r, "occurrenceDateTime"),
        title: codeText(r.vaccineCode),
        detail: r.lotNumber ? `lot ${r.lotNumber}` : "",
        status: r.status || "",
      };
    case "Observation":
      return {
        date: firstDate(r, "effectiveDateTime", "effectivePeriod.start", "issued"),
        title: codeText(r.code),
        detail: valueText(r),
        status: r.status || "",
      };
    case "ImagingStudy": {
      const modalities = (r.modality || []).map((m) => m.code).join(", ");
      const counts = [
        r.numberOfSeries !== undefined && `${r.numberOfSeries} series`,
        r.numberOfInstances !== undefined && `${r.numberOfInstances} instances`,
      ].filter(Boolean);
      return {
        date: firstDate(r, "started"),
        title: r.description || modalities || "Imaging study",
        detail: [modalities, ...counts].filter(Boolean).join(" · "),
        status: r.status || "",
      };
    }
    default:
      return {
        date: firstDate(r, "effectiveDateTime", "date", "authoredOn", "occurrenceDateTime", "period.start"),
        title: codeText(r.code) || codeText((r.type || [])[0]) || r.description || r.resourceType,
        detail: r.id ? `${r.resourceType}/${r.id}` : r.resourceType,
        status: statusOf(r),
      };
  }
}

/** The patient a resource belongs to (subject or patient reference), as an id. */
export function patientIdOf(resource) {
  if (resource.resourceType === "Patient") return resource.id;
  for (const key of ["subject", "patient", "beneficiary"]) {
    const ref = (resource[key] || {}).reference || "";
    const match = /(?:^|\/)Patient\/([A-Za-z0-9\-.]{1,64})$/.exec(ref);
    if (match) return match[1];
  }
  return null;
}

/** Wait `ms` after the last call before running `fn` (for search-as-you-type). */
export function debounce(fn, ms) {
  let timer = null;
  return (...args) => {
    clearTimeout(timer);
    timer = setTimeout(() => fn(...args), ms);
  };
}

// The records of a text/event-stream response (read with fetch, so the user's token is sent),
// one at a time, each its raw text ("event: …\ndata: …"); ends with the stream.
export async function* streamRecords(response) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += decoder.decode(value, { stream: true });
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      yield buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
    }
  }
}
