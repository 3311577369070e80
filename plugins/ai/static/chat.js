// The chat page: asks /plugins/ai/v1/chat/completions with the signed-in user's token, streams
// the answer (server-sent events), shows the hub's tool calls as they run and the sources as
// links. Everything from the server is inserted as text, never as HTML.
import { streamRecords } from "/ui/static/fhir.js";

const params = new URLSearchParams(window.location.search);
const patientId = params.get("patient") || null;
const token = sessionStorage.getItem("fhirhub.token");
const auth = token ? { Authorization: `Bearer ${token}` } : {};
const log = document.getElementById("log");
const form = document.getElementById("ask");
const question = document.getElementById("question");
const resourceBox = document.getElementById("resource");
let conversation = null;
const history = [];

document.getElementById("patient-label").textContent = patientId ? `· Patient/${patientId}` : "";

fetch("/plugins/ai/v1/status", { headers: auth })
  .then((r) => (r.ok ? r.json() : Promise.reject(new Error(`HTTP ${r.status}`))))
  .then((s) => {
    document.getElementById("model-status").textContent = s.model
      ? `Model: ${s.model}${s.external ? " (external: identifiers are stripped before sending)" : ""} · ${s.indexed_chunks} passages indexed`
      : `No model configured: answers quote the record and its documents (extractive), nothing is generated. ${s.indexed_chunks} passages indexed.`;
  })
  .catch((e) => { document.getElementById("model-status").textContent = `Assistant unavailable: ${e.message}`; });

function item(cls, text) {
  const li = document.createElement("li");
  li.className = cls;
  li.textContent = text || "";
  log.appendChild(li);
  return li;
}

async function showResource(reference) {
  const [type, id] = reference.split("#")[0].split("/");
  const r = await fetch(`/fhir/${encodeURIComponent(type)}/${encodeURIComponent(id)}`, { headers: { Accept: "application/fhir+json", ...auth } });
  resourceBox.hidden = false;
  resourceBox.textContent = r.ok ? JSON.stringify(await r.json(), null, 1) : `HTTP ${r.status}`;
}

function finish(answer, meta) {
  if (meta.refused) answer.classList.add("refused");
  for (const g of meta.guardrails || []) {
    const flag = document.createElement("div");
    flag.className = "flag";
    flag.textContent = `⚠ ${g.rule}: ${g.detail}`;
    answer.appendChild(flag);
  }
  const cited = (meta.sources || []).map((s) => s.citation);
  const refs = [...cited, ...(meta.references || []).filter((r) => !cited.some((c) => c.startsWith(`${r}#`)))];
  if (refs.length) {
    const box = document.createElement("div");
    box.className = "sources";
    box.append("Sources: ");
    for (const ref of [...new Set(refs)]) {
      const a = document.createElement("a");
      a.href = "#";
      a.textContent = ref;
      a.addEventListener("click", (e) => { e.preventDefault(); showResource(ref); });
      box.appendChild(a);
    }
    answer.appendChild(box);
  }
  conversation = meta.conversation || conversation;
}

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  const text = question.value.trim();
  if (!text) return;
  question.value = "";
  item("question", text);
  history.push({ role: "user", content: text });
  const answer = item("answer", "");
  const body = document.createElement("span");
  answer.appendChild(body);
  const response = await fetch("/plugins/ai/v1/chat/completions", {
    method: "POST",
    headers: { "Content-Type": "application/json", ...auth },
    body: JSON.stringify({ messages: history, stream: true, patient: patientId, conversation }),
  });
  if (!response.ok) {
    body.textContent = `The assistant refused the request (HTTP ${response.status}).`;
    return;
  }
  let full = "";
  for await (const record of streamRecords(response)) {
    const line = record.trim();
    if (!line.startsWith("data: ") || line === "data: [DONE]") continue;
    const chunk = JSON.parse(line.slice(6));
    const delta = (chunk.choices[0] || {}).delta || {};
    if (delta.content) { full += delta.content; body.textContent = full; }
    if (chunk.fhirhub && chunk.fhirhub.tool) {
      const t = document.createElement("div");
      t.className = "tool";
      t.textContent = `tool: ${chunk.fhirhub.tool.name} ${JSON.stringify(chunk.fhirhub.tool.arguments)}`;
      answer.insertBefore(t, body);
    }
    if (chunk.fhirhub && chunk.fhirhub.conversation) {
      for (const t of chunk.fhirhub.tools || []) {
        const d = document.createElement("div");
        d.className = "tool";
        d.textContent = `tool: ${t.name} (${t.why}) → ${t.references.length} result(s)`;
        answer.insertBefore(d, body);
      }
      finish(answer, chunk.fhirhub);
    }
  }
  history.push({ role: "assistant", content: full });
});
