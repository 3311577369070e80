// The MPI review queue: open review Tasks, both records side by side, and the decision.
// Data comes from the FHIR API with the signed-in user's token (the shell's fhir.js);
// patient data is inserted as text only (el()), never as HTML.
import { fhirGet, authHeaders } from "/ui/static/fhir.js";

const CODE = "http://fhirhub.org/fhir/CodeSystem/mpi|review-match";
const FIELDS = ["given", "family", "birth_date", "sex", "postcode", "address", "phone", "email"];

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, value);
  for (const child of children) node.append(child instanceof Node ? child : String(child ?? ""));
  return node;
}

function input(task, text) {
  return (task.input || []).filter((i) => i.type && i.type.text === text);
}

function nameOf(p) {
  const n = (p.name || [])[0] || {};
  return n.text || [...(n.given || []), n.family || ""].join(" ").trim() || "(no name)";
}

function fieldOf(p, field) {
  switch (field) {
    case "given": return ((p.name || [])[0] || {}).given?.join(" ") || "";
    case "family": return ((p.name || [])[0] || {}).family || "";
    case "birth_date": return p.birthDate || "";
    case "sex": return p.gender || "";
    case "postcode": return ((p.address || [])[0] || {}).postalCode || "";
    case "address": return (((p.address || [])[0] || {}).line || []).join(", ");
    case "phone": return (p.telecom || []).filter((t) => t.system === "phone").map((t) => t.value).join(", ");
    case "email": return (p.telecom || []).filter((t) => t.system === "email").map((t) => t.value).join(", ");
    default: return "";
  }
}

async function decide(taskId, decision, card) {
  const response = await fetch(`/fhir/Task/${encodeURIComponent(taskId)}/$mpi-decide`, {
    method: "POST",
    headers: { "Content-Type": "application/fhir+json", ...authHeaders() },
    body: JSON.stringify({
      resourceType: "Parameters",
      parameter: [{ name: "decision", valueCode: decision }],
    }),
  });
  const result = card.querySelector(".result");
  if (response.ok) {
    result.textContent = decision === "same" ? "Linked as the same person." : "Recorded as different people.";
    card.dataset.decided = decision;
    card.querySelectorAll("button").forEach((b) => (b.disabled = true));
  } else {
    const data = await response.json().catch(() => ({}));
    result.textContent = `Not saved: ${(data.issue || []).map((i) => i.diagnostics).join("; ") || response.status}`;
  }
}

async function load() {
  const status = document.getElementById("status");
  const queue = document.getElementById("queue");
  const bundle = await fhirGet(`Task?code=${encodeURIComponent(CODE)}&status=requested&_count=50&_sort=-authored-on`);
  const tasks = (bundle.entry || []).map((e) => e.resource);
  status.textContent = tasks.length ? `${tasks.length} pair(s) to review` : "Nothing to review.";
  for (const task of tasks) {
    const ids = input(task, "candidate").map((i) => i.valueReference.reference.split("/")[1]);
    const found = await fhirGet(`Patient?_id=${ids.map(encodeURIComponent).join(",")}`);
    const byId = Object.fromEntries((found.entry || []).map((e) => [e.resource.id, e.resource]));
    const [a, b] = ids.map((id) => byId[id] || { id });
    const agreement = Object.fromEntries(
      (input(task, "agreement")[0]?.valueString || "").split("; ").map((s) => s.split(": ")));
    const score = input(task, "score")[0]?.valueDecimal;
    const rows = FIELDS.map((f) => el("tr", { class: agreement[f] || "" },
      el("th", {}, f.replace("_", " ")), el("td", {}, fieldOf(a, f)), el("td", {}, fieldOf(b, f)),
      el("td", {}, agreement[f] || "")));
    const card = el("section", { class: "pair", "data-task": task.id },
      el("h2", {}, `${nameOf(a)} / ${nameOf(b)}`),
      el("p", { class: "muted" }, `Score ${score ?? "?"} — ${task.description || ""}`),
      el("table", {}, el("tr", {}, el("th", {}, "field"), el("th", {}, `Patient/${a.id}`),
        el("th", {}, `Patient/${b.id}`), el("th", {}, "agreement")), ...rows),
      el("div", { class: "actions" },
        el("button", { type: "button", class: "accept" }, "Same person: link"),
        el("button", { type: "button", class: "reject" }, "Different people")),
      el("p", { class: "result", role: "status" }));
    card.querySelector(".accept").addEventListener("click", () => decide(task.id, "same", card));
    card.querySelector(".reject").addEventListener("click", () => decide(task.id, "not-same", card));
    queue.append(card);
  }
}

load().catch((error) => {
  document.getElementById("status").textContent = `Could not load the review queue: ${error.message}`;
});
