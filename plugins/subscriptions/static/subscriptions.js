// The subscriptions status page: Subscriptions from the FHIR API and each one's $status, with
// the signed-in user's token (the shell's fhir.js); values are inserted as text only.
import { fhirGet } from "/ui/static/fhir.js";

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, value);
  for (const child of children) node.append(child instanceof Node ? child : String(child ?? ""));
  return node;
}

function param(parameters, name) {
  const found = (parameters.parameter || []).find((p) => p.name === name);
  if (!found) return "";
  const key = Object.keys(found).find((k) => k.startsWith("value"));
  return key ? (found[key].text ?? found[key]) : "";
}

async function load() {
  const status = document.getElementById("status");
  const rows = document.getElementById("rows");
  const bundle = await fhirGet("Subscription?_count=100");
  const subscriptions = (bundle.entry || []).map((e) => e.resource);
  status.textContent = subscriptions.length ? `${subscriptions.length} subscription(s)` : "No subscriptions.";
  for (const s of subscriptions) {
    let events = "";
    let error = s.error || "";
    try {
      const result = await fhirGet(`Subscription/${encodeURIComponent(s.id)}/$status`);
      const parameters = ((result.entry || [])[0] || {}).resource || {};
      events = param(parameters, "events-since-subscription-start");
      error = error || param(parameters, "error");
    } catch (e) {
      events = "–";
    }
    rows.append(
      el("tr", { "data-id": s.id },
        el("td", {}, s.id),
        el("td", {}, s.criteria || ""),
        el("td", {}, `${(s.channel || {}).type || ""} ${(s.channel || {}).endpoint || ""}`),
        el("td", { class: s.status }, s.status),
        el("td", {}, events),
        el("td", { class: "error" }, error)));
  }
}

load().catch((e) => { document.getElementById("status").textContent = `Could not load: ${e}`; });
