// The report page: the AI-assisted DiagnosticReports of the caller's tenant, a report's
// findings with Approve/Decline, the image with the model's regions, the report form and the
// sign button. Every change is a plain FHIR update (PUT with If-Match), as any client makes.
// Patient data is inserted as text only (el()), never as HTML; the signed report is shown in
// a sandboxed frame.
import { fhirGet as shellGet, authHeaders } from "/ui/static/fhir.js";

const TAG = "urn:fhirhub:imaging-ai";
const SECTION_URL = "http://fhirhub.org/fhir/StructureDefinition/radiology-report-section";
const SECTIONS = [
  ["clinical-information", "Clinical information"],
  ["indication", "Indication"],
  ["technique", "Technique"],
  ["findings", "Findings"],
];
const DICOMWEB = "/plugins/dicom/dicomweb";

// Always the current version: after a decision the browser must not show a cached one.
async function fhirGet(path) {
  const url = /^(https?:|\/)/.test(path) ? path : `/fhir/${path}`;
  const response = await fetch(url, { cache: "no-store", headers: { Accept: "application/fhir+json", ...authHeaders() } });
  if (response.status === 401) return shellGet(url);  // the shell signs in again
  const data = await response.json().catch(() => ({}));
  if (!response.ok) {
    throw new Error((data.issue || []).map((i) => i.diagnostics || i.code).join("; ") || `HTTP ${response.status}`);
  }
  return data;
}

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value);
  }
  for (const child of children) node.append(child instanceof Node ? child : String(child ?? ""));
  return node;
}

function status(text, kind = "") {
  const node = document.getElementById("status");
  node.textContent = text;
  node.className = kind;
}

async function put(resource, versionId) {
  const response = await fetch(`/fhir/${resource.resourceType}/${encodeURIComponent(resource.id)}`, {
    method: "PUT",
    headers: {
      "Content-Type": "application/fhir+json",
      Accept: "application/fhir+json",
      ...(versionId ? { "If-Match": `W/"${versionId}"` } : {}),
      ...authHeaders(),
    },
    body: JSON.stringify(resource),
  });
  const data = await response.json().catch(() => ({}));
  if (!response.ok) {
    const text = (data.issue || []).map((i) => i.diagnostics || i.code).join("; ");
    throw new Error(text || `HTTP ${response.status}`);
  }
  return data;
}

function component(observation, code) {
  const c = (observation.component || []).find((x) =>
    (x.code.coding || []).some((coding) => coding.code === code));
  return c ? c.valueString : null;
}

function studyUid(study) {
  const id = (study.identifier || []).find((i) => i.system === "urn:dicom:uid");
  return id ? id.value.replace(/^urn:oid:/, "") : null;
}

async function drawImage(container, study, finding) {
  const series = component(finding, "series-instance-uid");
  const sop = component(finding, "sop-instance-uid");
  const uid = studyUid(study);
  if (!series || !sop || !uid) return;
  const url = `${DICOMWEB}/studies/${uid}/series/${series}/instances/${sop}/rendered`;
  const response = await fetch(url, { cache: "no-store", headers: { Accept: "image/png", ...authHeaders() } });
  if (!response.ok) {
    container.append(el("p", { class: "warn" }, `Image not available (${response.status})`));
    return;
  }
  const bitmap = await createImageBitmap(await response.blob());
  const canvas = el("canvas", { width: bitmap.width, height: bitmap.height, "data-sop": sop });
  const context = canvas.getContext("2d");
  context.drawImage(bitmap, 0, 0);
  const box = component(finding, "bounding-box");
  if (box) {
    const [x0, y0, x1, y1] = box.split(" ").map(Number);
    context.strokeStyle = finding.status === "cancelled" ? "#ff5555" : "#ffd21f";
    context.lineWidth = Math.max(2, bitmap.width / 128);
    context.strokeRect(x0, y0, x1 - x0, y1 - y0);
    context.fillStyle = context.strokeStyle;
    context.font = `${Math.max(12, bitmap.width / 20)}px sans-serif`;
    context.fillText(finding.code.text || "", x0, Math.max(12, y0 - 4));
  }
  container.append(el("div", { class: "viewer" }, canvas));
}

async function decide(observation, decision, reason) {
  const current = await fhirGet(`Observation/${observation.id}`);
  current.status = decision;
  if (decision === "cancelled" && reason) {
    current.note = [...(current.note || []), { text: reason }];
  }
  return put(current, current.meta && current.meta.versionId);
}

function findingCard(observation, signed, refresh) {
  const value = observation.valueQuantity ? observation.valueQuantity.value : "?";
  const name = observation.code.text || "Finding";
  const card = el("div", { class: `finding ${observation.status}`, "data-finding": observation.id });
  const decided = { final: "approved", cancelled: "declined" }[observation.status];
  card.append(el("strong", {}, `${name} ${value} %`));
  if (decided) {
    card.append(" ", el("span", { class: "badge" }, decided));
    const notes = (observation.note || []).map((n) => n.text).join("; ");
    if (notes) card.append(el("div", { class: "muted" }, notes));
  }
  if (signed) return card;
  const reason = el("input", { type: "text", placeholder: "reason (for a decline)", "aria-label": "Reason" });
  const result = el("span", { class: "result" });
  const act = (decision) => async () => {
    try {
      await decide(observation, decision, reason.value);
      await refresh();
    } catch (error) {
      result.textContent = `Not saved: ${error.message}`;
      result.className = "result error";
    }
  };
  card.append(
    el("div", {}, decided ? "Change the decision? " : "Add to the report? ",
      el("button", { type: "button", class: "approve", onclick: act("final") }, "Approve"),
      el("button", { type: "button", class: "decline", onclick: act("cancelled") }, "Decline"),
      reason, " ", result),
  );
  return card;
}

function sectionText(report, name) {
  for (const ext of report.extension || []) {
    if (ext.url !== SECTION_URL) continue;
    const parts = Object.fromEntries((ext.extension || []).map((e) => [e.url, e]));
    if (parts.section && parts.section.valueCode === name) return parts.text ? parts.text.valueString : "";
  }
  return "";
}

function withForm(report, form) {
  const copy = structuredClone(report);
  copy.extension = (copy.extension || []).filter((e) => e.url !== SECTION_URL);
  for (const [name] of SECTIONS) {
    const text = form.querySelector(`[name=${name}]`).value.trim();
    if (text) {
      copy.extension.push({ url: SECTION_URL, extension: [
        { url: "section", valueCode: name }, { url: "text", valueString: text }] });
    }
  }
  if (!copy.extension.length) delete copy.extension;
  const impression = form.querySelector("[name=impression]").value.trim();
  if (impression) copy.conclusion = impression; else delete copy.conclusion;
  return copy;
}

async function signerSelect() {
  const bundle = await fhirGet("Practitioner?_count=100");
  const select = el("select", { name: "signer", "aria-label": "Signing radiologist" });
  for (const entry of bundle.entry || []) {
    const p = entry.resource;
    const n = (p.name || [])[0] || {};
    const text = n.text || [...(n.given || []), n.family || ""].join(" ").trim() || p.id;
    select.append(el("option", { value: `Practitioner/${p.id}`, "data-display": text }, text));
  }
  select.append(el("option", { value: "" }, "Someone else (enter the name)…"));
  return select;
}

async function signerReference(form) {
  const select = form.querySelector("[name=signer]");
  if (select.value) {
    return { reference: select.value, display: select.selectedOptions[0].dataset.display };
  }
  const name = form.querySelector("[name=signer-name]").value.trim();
  if (!name) throw new Error("Choose or enter the signing radiologist");
  const parts = name.split(" ");
  const response = await fetch("/fhir/Practitioner", {
    method: "POST",
    headers: { "Content-Type": "application/fhir+json", Accept: "application/fhir+json", ...authHeaders() },
    body: JSON.stringify({ resourceType: "Practitioner",
      name: [{ text: name, family: parts.at(-1), given: parts.slice(0, -1) }] }),
  });
  const created = await response.json();
  if (!response.ok) throw new Error((created.issue || []).map((i) => i.diagnostics).join("; "));
  // chosen from now on, so a refused signing does not create the Practitioner twice
  const option = el("option", { value: `Practitioner/${created.id}`, "data-display": name }, name);
  select.prepend(option);
  select.value = option.value;
  form.querySelector("[name=signer-name]").value = "";
  return { reference: `Practitioner/${created.id}`, display: name };
}

function finalView(report) {
  const form = (report.presentedForm || [])[0];
  const box = el("section", { id: "final-report" }, el("h2", {}, "Signed report"));
  if (form && form.data) {
    const html = new TextDecoder().decode(Uint8Array.from(atob(form.data), (c) => c.charCodeAt(0)));
    const frame = el("iframe", { class: "final", sandbox: "", title: "Signed report" });
    frame.srcdoc = html;
    box.append(frame);
  }
  return box;
}

async function showReport(id) {
  const main = document.getElementById("report");
  const report = await fhirGet(`DiagnosticReport/${id}`);
  const signed = ["final", "amended", "corrected", "appended"].includes(report.status);
  const studyRef = (report.imagingStudy || [])[0];
  const study = studyRef ? await fhirGet(studyRef.reference) : {};
  const findings = [];
  for (const r of report.result || []) findings.push(await fhirGet(r.reference));
  let patient = (report.subject || {}).reference || "";
  try {
    const p = await fhirGet(patient);
    const n = (p.name || [])[0] || {};
    patient = n.text || [...(n.given || []), n.family || ""].join(" ").trim() || patient;
  } catch (_) { /* the reference is shown instead */ }
  const badge = document.querySelector(`#reports [data-report="${CSS.escape(id)}"] .badge`);
  if (badge) badge.textContent = report.status;
  main.replaceChildren(
    el("h2", {}, `${report.code.text || "Report"} `, el("span", { class: "badge", id: "report-status" }, report.status)),
    el("p", { class: "muted" }, `${patient} · ${studyRef ? studyRef.reference : ""} · issued ${report.issued || ""}`),
  );
  const refresh = () => showReport(id);
  const images = el("div", { class: "images" });
  main.append(el("h3", {}, "Findings"));
  if (!findings.length) main.append(el("p", {}, "The model offered no finding."));
  for (const f of findings) main.append(findingCard(f, signed, refresh));
  main.append(images);
  const shown = new Set();
  for (const f of findings) {
    const sop = component(f, "sop-instance-uid");
    if (sop && !shown.has(sop)) { shown.add(sop); await drawImage(images, study, f); }
    else if (sop) {
      // a second finding on the same image: draw its box on the same canvas
      const canvas = images.querySelector(`canvas[data-sop="${sop}"]`);
      const box = component(f, "bounding-box");
      if (canvas && box) {
        const [x0, y0, x1, y1] = box.split(" ").map(Number);
        const c = canvas.getContext("2d");
        c.strokeStyle = f.status === "cancelled" ? "#ff5555" : "#37d0ff";
        c.strokeRect(x0, y0, x1 - x0, y1 - y0);
      }
    }
  }
  if (signed) {
    main.append(finalView(report));
    return;
  }
  const form = el("form", { id: "report-form" });
  for (const [name, title] of SECTIONS) {
    const area = el("textarea", { name, id: `s-${name}` });
    area.value = sectionText(report, name);
    form.append(el("label", { for: `s-${name}` }, title), area);
  }
  const impression = el("textarea", { name: "impression", id: "s-impression" });
  impression.value = report.conclusion || "";
  form.append(el("label", { for: "s-impression" }, "Impression"), impression);
  form.append(el("label", {}, "Signing radiologist"), await signerSelect(),
    el("input", { type: "text", name: "signer-name", placeholder: "or a new name", "aria-label": "Signer name" }));
  const result = el("p", { class: "result" });
  const save = async (sign) => {
    try {
      const current = await fhirGet(`DiagnosticReport/${id}`);
      const next = withForm(current, form);
      if (sign) {
        next.status = "final";
        next.resultsInterpreter = [await signerReference(form)];
      }
      await put(next, current.meta && current.meta.versionId);
      await refresh();
      status(sign ? "Report signed." : "Draft saved.");
    } catch (error) {
      result.textContent = `Not saved: ${error.message}`;
      result.className = "result error";
    }
  };
  form.append(el("p", {},
    el("button", { type: "button", id: "save", onclick: () => save(false) }, "Save draft"), " ",
    el("button", { type: "button", id: "sign", onclick: () => save(true) }, "Sign report")), result);
  main.append(el("h3", {}, "Report"), form);
}

async function load() {
  try {
    const bundle = await fhirGet(`DiagnosticReport?_tag=${encodeURIComponent(`${TAG}|report`)}&_sort=-_lastUpdated&_count=50`);
    const list = document.querySelector("#reports ul");
    list.replaceChildren();
    // a report superseded by a later analysis of its study (entered-in-error) is history only
    const entries = (bundle.entry || []).filter((e) => e.resource.status !== "entered-in-error");
    status(entries.length ? `${entries.length} report(s)` : "No AI-assisted report yet: store a study (C-STORE, STOW-RS) and wait for its analysis.");
    for (const entry of entries) {
      const r = entry.resource;
      const item = el("li", { "data-report": r.id },
        `${(r.subject || {}).reference || "?"} `, el("span", { class: "badge" }, r.status),
        el("div", { class: "muted" }, r.issued || ""));
      item.addEventListener("click", async () => {
        list.querySelectorAll("li").forEach((li) => li.classList.remove("selected"));
        item.classList.add("selected");
        await showReport(r.id);
      });
      list.append(item);
    }
    const wanted = new URLSearchParams(location.search).get("report");
    const first = wanted ? list.querySelector(`[data-report="${CSS.escape(wanted)}"]`) : list.querySelector("li");
    if (first) first.click();
  } catch (error) {
    status(`Could not load the reports: ${error.message}`, "error");
  }
}

load();
