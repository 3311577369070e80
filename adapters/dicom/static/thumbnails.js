// Thumbnails of a patient's imaging studies: FHIR ImagingStudy + DICOMweb (QIDO-RS, WADO-RS).
// A series opens in the OHIF Viewer when the "ohif" plugin has it installed
// (GET /plugins/ohif/status), else in this adapter's own series viewer.
import { authHeaders, signIn } from "/ui/static/fhir.js";
import { authorizedImage } from "./images.js";

const root = document.getElementById("studies");
const prefix = root.dataset.prefix;
const web = `${prefix}/dicomweb`;

function el(tag, props = {}, ...children) {
  const node = Object.assign(document.createElement(tag), props);
  node.append(...children);
  return node;
}

function studyUid(study) {
  const id = (study.identifier || []).find((i) => (i.value || "").startsWith("urn:oid:"));
  return id ? id.value.slice("urn:oid:".length) : null;
}

async function json(url) {
  const response = await fetch(url, { headers: { Accept: "application/fhir+json, application/dicom+json", ...authHeaders() } });
  if (response.status === 401) signIn();
  if (!response.ok) throw new Error(`${url}: HTTP ${response.status}`);
  return response.status === 204 ? [] : response.json();
}

/** The OHIF Viewer's address (`.../viewer/`) when it is installed, else null. */
async function ohifViewer() {
  try {
    const response = await fetch("/plugins/ohif/status", { headers: { Accept: "application/json" } });
    if (!response.ok) return null;
    const status = await response.json();
    return status.installed ? status.viewer : null;
  } catch (_) {
    return null;
  }
}

function seriesHref(ohif, study, series) {
  if (ohif) {
    return `${ohif}viewer?StudyInstanceUIDs=${encodeURIComponent(study)}&initialSeriesInstanceUID=${encodeURIComponent(series)}`;
  }
  return `${prefix}/ui/viewer?study=${encodeURIComponent(study)}&series=${encodeURIComponent(series)}`;
}

async function thumbnail(study, series, ohif) {
  const instances = await json(`${web}/studies/${study}/series/${series.uid}/instances`);
  const link = el("a", { className: "series", href: seriesHref(ohif, study, series.uid), target: "_top" });
  if (ohif) link.dataset.viewer = "ohif";
  const label = `${(series.modality || {}).code || ""} ${series.description || ""} (${instances.length})`.trim();
  if (instances.length) {
    const sop = instances[0]["00080018"].Value[0];
    const img = el("img", { alt: label });
    authorizedImage(img, `${web}/studies/${study}/series/${series.uid}/instances/${sop}/rendered`);
    link.append(img);
  }
  link.append(el("span", { textContent: label }));
  return link;
}

async function main() {
  const ohif = await ohifViewer();
  const bundle = await json(`/fhir/ImagingStudy?subject=Patient/${encodeURIComponent(root.dataset.patient)}&_count=50`);
  const studies = (bundle.entry || []).map((e) => e.resource);
  root.replaceChildren();
  if (!studies.length) root.append(el("p", { className: "muted", textContent: "No imaging studies." }));
  for (const study of studies) {
    const uid = studyUid(study);
    const box = el("section", { className: "study" }, el("h3", { textContent: `${study.started || ""} ${study.description || ""}`.trim() || "Study" }));
    root.append(box);
    if (!uid) continue;
    for (const series of study.series || []) {
      try {
        box.append(await thumbnail(uid, series, ohif));
      } catch (error) {
        box.append(el("p", { className: "muted", textContent: `Series ${series.uid}: images not stored here` }));
      }
    }
  }
}

main().catch((error) => root.replaceChildren(el("p", { className: "muted", textContent: error.message })));
