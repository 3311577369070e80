// The patient chart: fills the panel placeholders the server rendered (one per
// `ui_patient_panels` entry of the enabled plugins) from the public FHIR API.
import {
  FHIR_BASE,
  ROOT,
  addressText,
  age,
  clear,
  codeText,
  describe,
  el,
  fhirGet,
  formatDate,
  humanName,
  message,
  mrn,
  searchAll,
} from "./fhir.js";
import { conditionForm } from "./condition_form.js";
import { vitalsView } from "./vitals_chart.js";

const banner = document.getElementById("patient-banner");
const patientId = banner.dataset.patientId;
const patientPromise = fhirGet(`Patient/${encodeURIComponent(patientId)}`);
const searches = new Map();

/** Each distinct search runs once even when several panels show its results. */
function cachedSearch(url) {
  if (!searches.has(url)) searches.set(url, searchAll(url));
  return searches.get(url);
}

function typeSearch(type, params) {
  if (type === "Patient") return patientPromise.then((p) => [p]);
  const query = [`patient=Patient/${encodeURIComponent(patientId)}`, params, "_count=100"]
    .filter(Boolean)
    .join("&");
  return cachedSearch(`${type}?${query}`);
}

function newestFirst(resources) {
  return resources
    .map((resource) => ({ resource, row: describe(resource) }))
    .sort((a, b) => (b.row.date || "").localeCompare(a.row.date || ""));
}

function table(resources) {
  if (!resources.length) return [message("None recorded")];
  const rows = newestFirst(resources).map(({ resource, row }) =>
    el(
      "tr",
      { "data-resource": `${resource.resourceType}/${resource.id}` },
      el("td", { className: "when", text: formatDate(row.date) }),
      el("td", { text: row.title }),
      el("td", { text: row.detail }),
      el("td", { className: "status", text: row.status }),
    ),
  );
  return [
    el(
      "table",
      { className: "data" },
      el("thead", {}, el("tr", {}, ["Date", "Description", "Details", "Status"].map((h) => el("th", { text: h })))),
      el("tbody", {}, rows),
    ),
  ];
}

function demographics(patient) {
  const rows = [
    ["Name", humanName(patient)],
    ["Gender", patient.gender || "unknown"],
    ["Birth date", patient.birthDate ? `${patient.birthDate} (age ${age(patient.birthDate)})` : ""],
    ...(patient.identifier || []).map((id) => [
      codeText(id.type) || "Identifier",
      [id.value, id.system && `(${id.system})`].filter(Boolean).join(" "),
    ]),
    ...(patient.address || []).map((a) => [`Address${a.use ? ` (${a.use})` : ""}`, addressText(a)]),
    ...(patient.telecom || []).map((t) => [t.system || "Contact", `${t.value || ""}${t.use ? ` (${t.use})` : ""}`]),
    ["Deceased", patient.deceasedDateTime ? formatDate(patient.deceasedDateTime) : patient.deceasedBoolean ? "yes" : ""],
  ].filter(([, value]) => value);
  return [el("dl", { className: "facts" }, rows.flatMap(([term, value]) => [el("dt", { text: term }), el("dd", { text: value })]))];
}

function frame(url, title) {
  return [el("iframe", { className: "panel-frame", src: url, title, loading: "lazy" })];
}

async function renderPanel(section) {
  const body = section.querySelector(".panel-body");
  const heading = section.querySelector("h2");
  const { renderer, params, url } = section.dataset;
  const types = (section.dataset.resourceTypes || "").split(",").filter(Boolean);
  let resources = [];
  const problems = [];
  if (url) {
    const target = url.replaceAll("{patient_id}", encodeURIComponent(patientId));
    if (!(target.startsWith(`${FHIR_BASE}/`) || target.startsWith("/fhir/"))) {
      clear(body).append(...frame(`${ROOT}${target}`, heading.textContent));
      return;
    }
    try {
      resources = await cachedSearch(target);
    } catch (error) {
      problems.push(error.message);
    }
  } else {
    const results = await Promise.allSettled(types.map((type) => typeSearch(type, params)));
    results.forEach((result, index) => {
      if (result.status === "fulfilled") resources.push(...result.value);
      else problems.push(`${types[index]}: ${result.reason.message}`);
    });
  }
  const content =
    renderer === "demographics" && resources.length
      ? demographics(resources[0])
      : renderer === "vitals"
        ? vitalsView(resources)
        : table(resources);
  if (renderer !== "demographics") {
    const badge = heading.querySelector(".badge");
    if (badge) badge.textContent = String(resources.length);
    else heading.append(el("span", { className: "badge", text: String(resources.length) }));
  }
  clear(body).append(...content, ...problems.map((p) => message(`Could not load ${p}`, "error")));
  section.dataset.loaded = "true";
}

/** After a write: search again and redraw every panel that shows resources of `type`. */
async function reloadPanels(type) {
  searches.clear();
  const sections = Array.from(document.querySelectorAll("section[data-panel-id]")).filter(
    (section) =>
      (section.dataset.resourceTypes || "").split(",").includes(type) ||
      (section.dataset.url || "").includes(`/${type}?`),
  );
  await Promise.all(sections.map(renderPanel));
}

const FORMS = {
  "add-condition": (section) =>
    conditionForm(section, patientId, banner.dataset.codeLookup === "true", () => reloadPanels("Condition")),
};

async function main() {
  const name = document.getElementById("patient-name");
  const summary = document.getElementById("patient-summary");
  try {
    const patient = await patientPromise;
    name.textContent = humanName(patient);
    document.title = `${humanName(patient)} · fhirhub`;
    summary.textContent = [
      patient.gender,
      patient.birthDate && `born ${patient.birthDate} (age ${age(patient.birthDate)})`,
      mrn(patient) && `MRN ${mrn(patient)}`,
    ]
      .filter(Boolean)
      .join(" · ");
  } catch (error) {
    name.textContent = "Patient not available";
    summary.textContent = error.message;
    summary.className = "error";
    for (const body of document.querySelectorAll(".panel-body")) clear(body);
    return;
  }
  const sections = Array.from(document.querySelectorAll("section[data-panel-id]"));
  for (const section of sections) {
    const form = FORMS[section.dataset.form];
    if (form) form(section);
  }
  await Promise.all(sections.map(renderPanel));
  document.body.dataset.chartReady = "true";
}

main();
