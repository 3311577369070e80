// The ward dashboard: latest NEWS2 per patient, open alerts with acknowledge buttons, a
// patient's observation chart, and the bedside entry form. Data comes from the plugin's API
// and the FHIR API with the signed-in user's token (the shell's fhir.js); live updates arrive
// as Server-Sent Events read through fetch (EventSource cannot send the token). Patient data is
// inserted as text only (el()), never as HTML.
import { authHeaders, el, signIn } from "/ui/static/fhir.js";

const API = "/plugins/vitals/api";
const PARAMETERS = ["respiration", "spo2", "oxygen", "systolic", "pulse", "consciousness", "temperature"];
const LABELS = {
  respiration: "Respiration rate", spo2: "SpO2", oxygen: "Air or oxygen",
  systolic: "Systolic blood pressure", pulse: "Pulse", consciousness: "Consciousness",
  temperature: "Temperature",
};
const PLAUSIBLE = { rr: [4, 60], spo2: [50, 100], o2: [0, 15], sbp: [50, 260], pulse: [25, 220], temp: [30, 43] };
const POSSIBLE = { rr: [0, 150], spo2: [0, 100], o2: [0, 100], sbp: [0, 400], pulse: [0, 400], temp: [10, 50] };
const ARROWS = { up: "▲", down: "▼", same: "▶", "": "" };

let messages = {};
let board = { patients: [], alerts: [] };
let reloadTimer = null;
let openPatient = null;
window.vitalsEvents = [];  // (type, patient, received ms): read by the browser tests

const t = (text) => messages[text] || text;

async function api(path, options = {}) {
  const response = await fetch(`${API}${path}`, {
    ...options,
    headers: { Accept: "application/json", "Content-Type": "application/json", ...authHeaders(), ...(options.headers || {}) },
  });
  if (response.status === 401) signIn();
  const data = await response.json().catch(() => ({}));
  if (!response.ok) {
    const text = (data.issue || []).map((i) => i.diagnostics).join("; ") || `HTTP ${response.status}`;
    throw new Error(text);
  }
  return data;
}

async function setLanguage(language) {
  const response = await fetch(`/plugins/vitals/ward/i18n/${encodeURIComponent(language)}.json`);
  messages = response.ok ? await response.json() : {};
  document.documentElement.lang = language;
  document.getElementById("language").value = language;
  for (const node of document.querySelectorAll("[data-i18n]")) node.textContent = t(node.dataset.i18n);
  render();
}

function riskText(risk) {
  return { low: t("Low"), "low-medium": t("Low-medium"), medium: t("Medium"), high: t("High") }[risk] || "";
}

function render() {
  const ward = document.getElementById("ward").value;
  const names = Object.fromEntries(board.patients.map((p) => [p.patient, p.name || p.patient]));
  const alerts = document.getElementById("alerts");
  alerts.replaceChildren(...board.alerts.map((a) => {
    const title = a.kind === "news2" ? `NEWS2 ${a.total} (${riskText(a.risk)})` : `qSOFA ${a.total}`;
    const status = a.status === "acknowledged"
      ? `${t("Acknowledged by")} ${a.acknowledged_by}`
      : `${t("Escalation level")} ${a.level}`;
    const button = el("button", { type: "button", className: "ack", disabled: a.status === "acknowledged" }, t("Acknowledge"));
    button.dataset.flag = a.flag;
    button.addEventListener("click", () => acknowledge(a.flag, button));
    const item = el("li", { className: `risk-${a.risk} ${a.status}` }, el("strong", {}, names[a.patient] || a.patient), title, status, button);
    item.dataset.flag = a.flag;
    return item;
  }));
  if (!board.alerts.length) alerts.replaceChildren(el("li", {}, t("No open alerts")));
  const rows = board.patients.filter((p) => !ward || p.location === ward).map((p) => {
    const score = p.news2 === null ? "" : `${p.news2}${p.partial ? "*" : ""}`;
    const open = el("button", { type: "button" }, t("Chart"));
    open.addEventListener("click", () => showChart(p.patient, p.name));
    const row = el("tr", { className: `risk-${p.risk || "low"}` },
      el("td", {}, p.name || p.patient), el("td", {}, p.location),
      el("td", { className: p.partial ? "partial" : "", title: p.partial ? t("Partial score: parameters missing") : "" }, score),
      el("td", { title: p.previous === null ? "" : `${t("Previous")}: ${p.previous}` }, ARROWS[p.trend || ""]),
      el("td", {}, riskText(p.risk)), el("td", {}, p.qsofa === null ? "" : String(p.qsofa)),
      el("td", {}, p.time ? new Date(p.time).toLocaleString() : ""), el("td", {}, open));
    row.dataset.patient = p.patient;
    return row;
  });
  document.getElementById("board").replaceChildren(...rows);
  const wards = [...new Set(board.patients.map((p) => p.location).filter(Boolean))].sort();
  const select = document.getElementById("ward");
  select.replaceChildren(el("option", { value: "" }, t("All wards")), ...wards.map((w) => el("option", { value: w }, w)));
  select.value = ward;
  const entry = document.getElementById("entry-patient");
  const chosen = entry.value;
  entry.replaceChildren(...board.patients.map((p) => el("option", { value: p.patient }, p.name || p.patient)));
  if (chosen) entry.value = chosen;
}

async function loadBoard() {
  try {
    board = await api("/board");
    render();
    if (openPatient) showChart(openPatient.id, openPatient.name);
  } catch (error) {
    document.getElementById("live").textContent = error.message;
  }
}

function scheduleReload() {
  clearTimeout(reloadTimer);
  reloadTimer = setTimeout(loadBoard, 100);
}

async function acknowledge(flag, button) {
  button.disabled = true;
  try {
    await api(`/alerts/${encodeURIComponent(flag)}/acknowledge`, { method: "POST" });
    await loadBoard();
  } catch (error) {
    button.disabled = false;
    button.textContent = error.message;
  }
}

async function showChart(patient, name) {
  openPatient = { id: patient, name };
  const data = await api(`/patients/${encodeURIComponent(patient)}/chart`);
  const panel = document.getElementById("chart-panel");
  panel.hidden = false;
  document.getElementById("chart-title").textContent = `${t("Observation chart")}: ${name || patient}`;
  document.getElementById("export-csv").href = `${API}/patients/${encodeURIComponent(patient)}/export.csv`;
  document.getElementById("export-xlsx").href = `${API}/patients/${encodeURIComponent(patient)}/export.xlsx`;
  for (const id of ["export-csv", "export-xlsx"]) {
    const link = document.getElementById(id);
    link.onclick = (event) => { event.preventDefault(); download(link.href); };
  }
  const latest = data.scores[data.scores.length - 1];
  const breakdown = document.getElementById("breakdown");
  breakdown.replaceChildren(latest
    ? el("p", {}, `NEWS2 ${latest.total} (${riskText(latest.risk)})${latest.partial ? ` — ${t("Partial score: parameters missing")}` : ""}: `,
        PARAMETERS.map((n) => `${t(LABELS[n])} ${latest.points[n] ?? "–"}`).join(", "))
    : el("p", {}, t("No score yet")));
  const trend = document.getElementById("trend");
  trend.replaceChildren(el("p", {}, `${t("Rate of change per hour")}: `,
    Object.entries(data.trend).map(([n, v]) => `${n === "score" ? "NEWS2" : t(LABELS[n])} ${v > 0 ? "+" : ""}${v}`).join(", ") || "–"));
  const times = data.columns;
  const header = el("tr", {}, el("th", {}, ""), ...times.map((c) => el("th", { scope: "col" }, new Date(c).toLocaleString([], { dateStyle: "short", timeStyle: "short" }))));
  const body = [...PARAMETERS, "score"].map((name) => {
    const cells = times.map((c) => {
      const cell = (data.rows[name] || {})[c];
      if (!cell) return el("td", {}, "");
      return el("td", { className: `p${cell.points ?? 0}` }, String(cell.value));
    });
    return el("tr", {}, el("th", { scope: "row" }, name === "score" ? "NEWS2" : t(LABELS[name])), ...cells);
  });
  document.getElementById("chart").replaceChildren(el("table", {}, el("thead", {}, header), el("tbody", {}, ...body)));
}

async function download(url) {
  const response = await fetch(url, { headers: authHeaders() });
  if (!response.ok) return;
  const blob = await response.blob();
  const link = el("a", { href: URL.createObjectURL(blob) });
  link.download = (response.headers.get("Content-Disposition") || "").split("filename=")[1]?.replaceAll('"', "") || "vitals";
  link.click();
}

async function stream() {
  const live = document.getElementById("live");
  for (;;) {
    try {
      const response = await fetch(`${API}/stream`, { headers: { Accept: "text/event-stream", ...authHeaders() } });
      if (response.status === 401) return signIn();
      if (!response.ok || !response.body) throw new Error(`HTTP ${response.status}`);
      live.textContent = t("Live");
      live.dataset.state = "live";
      const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += value;
        let end;
        while ((end = buffer.indexOf("\n\n")) >= 0) {
          const chunk = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          const data = chunk.split("\n").filter((l) => l.startsWith("data: ")).map((l) => l.slice(6)).join("\n");
          if (!data) continue;
          const event = JSON.parse(data);
          window.vitalsEvents.push({ ...event, received: Date.now() });
          const counter = `${event.type}Events`;
          document.body.dataset[counter] = String(Number(document.body.dataset[counter] || 0) + 1);
          scheduleReload();
        }
      }
    } catch (error) {
      live.textContent = `${t("Reconnecting…")} (${error.message})`;
      live.dataset.state = "down";
    }
    await new Promise((resolve) => setTimeout(resolve, 2000));
  }
}

function quantity(code, value, unit, patient, when) {
  return {
    resourceType: "Observation", status: "final",
    category: [{ coding: [{ system: "http://terminology.hl7.org/CodeSystem/observation-category", code: "vital-signs" }] }],
    code: { coding: [{ system: "http://loinc.org", code }] },
    subject: { reference: `Patient/${patient}` }, effectiveDateTime: when,
    valueQuantity: { value, unit, system: "http://unitsofmeasure.org", code: unit },
  };
}

async function submitEntry(event) {
  event.preventDefault();
  const form = event.target;
  const result = document.getElementById("entry-result");
  const patient = document.getElementById("entry-patient").value;
  const values = {};
  const odd = [];
  for (const name of ["rr", "spo2", "o2", "sbp", "pulse", "temp"]) {
    const text = form.elements[name].value.trim();
    if (text === "") continue;
    const value = Number(text);
    const [lo, hi] = POSSIBLE[name];
    if (!Number.isFinite(value) || value < lo || value > hi) {
      result.textContent = `${t("Impossible value")}: ${form.elements[name].closest("label").textContent.trim()} ${text}`;
      form.elements[name].focus();
      return;
    }
    const [plo, phi] = PLAUSIBLE[name];
    if (value < plo || value > phi) odd.push(`${form.elements[name].closest("label").textContent.trim()} ${text}`);
    values[name] = value;
  }
  if (odd.length && !window.confirm(`${t("Unusual values — please confirm")}:\n${odd.join("\n")}`)) return;
  const when = new Date().toISOString();
  const entries = [];
  const add = (code, key, unit) => { if (key in values) entries.push(quantity(code, values[key], unit, patient, when)); };
  add("9279-1", "rr", "/min"); add("59408-5", "spo2", "%"); add("3151-8", "o2", "L/min");
  add("8480-6", "sbp", "mm[Hg]"); add("8867-4", "pulse", "/min"); add("8310-5", "temp", "Cel");
  if (form.elements.acvpu.value) {
    const obs = quantity("67775-7", 0, "", patient, when);
    delete obs.valueQuantity;
    obs.category[0].coding[0].code = "exam";
    obs.valueCodeableConcept = { coding: [{ system: "http://snomed.info/sct", code: form.elements.acvpu.value }] };
    entries.push(obs);
  }
  if (!entries.length) { result.textContent = t("Nothing to save"); return; }
  const bundle = { resourceType: "Bundle", type: "transaction", entry: entries.map((resource) => ({ resource, request: { method: "POST", url: "Observation" } })) };
  const response = await fetch("/fhir", { method: "POST", headers: { "Content-Type": "application/fhir+json", ...authHeaders() }, body: JSON.stringify(bundle) });
  if (response.ok) {
    result.textContent = t("Saved");
    form.reset();
  } else {
    const data = await response.json().catch(() => ({}));
    result.textContent = `${t("Not saved")}: ${(data.issue || []).map((i) => i.diagnostics).join("; ") || response.status}`;
  }
}

async function start() {
  document.getElementById("ward").addEventListener("change", render);
  document.getElementById("language").addEventListener("change", async (event) => {
    const language = event.target.value;
    await setLanguage(language);
    api("/preferences", { method: "PUT", body: JSON.stringify({ language }) }).catch(() => {});
  });
  document.getElementById("print").addEventListener("click", () => window.print());
  document.getElementById("entry").addEventListener("submit", submitEntry);
  let language = "en";
  try {
    language = (await api("/preferences")).language || "en";
  } catch (_) { /* keep English */ }
  await setLanguage(language);
  await loadBoard();
  stream();
}

start();
