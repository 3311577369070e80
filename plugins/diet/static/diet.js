// The diet optimiser page. Everything comes from the FHIR API with the signed-in user's token
// (the shell keeps it in sessionStorage); patient data is only inserted as text.

const FHIR = "/fhir";
const params = new URLSearchParams(window.location.search);
const patientId = params.get("patient") || "";
const excluded = new Set();
let lastOrder = null;

function headers(extra = {}) {
  const token = sessionStorage.getItem("fhirhub.token");
  return { Accept: "application/fhir+json", ...(token ? { Authorization: `Bearer ${token}` } : {}), ...extra };
}

async function fhir(path, { method = "GET", body } = {}) {
  const response = await fetch(`${FHIR}/${path}`, {
    method,
    headers: headers(body ? { "Content-Type": "application/fhir+json" } : {}),
    body: body ? JSON.stringify(body) : undefined,
  });
  let data = null;
  try { data = await response.json(); } catch (_) { data = null; }
  if (!response.ok) {
    const text = data && data.issue ? data.issue.map((i) => i.diagnostics || i.code).join("; ") : `HTTP ${response.status}`;
    throw new Error(text);
  }
  return data;
}

function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "text") node.textContent = String(value);
    else if (key === "className") node.className = value;
    else if (key === "style") {
      // Through the CSSOM: the Content-Security-Policy forbids inline style attributes.
      for (const rule of String(value).split(";")) {
        const [property, setting] = rule.split(":");
        if (property && setting) node.style.setProperty(property.trim(), setting.trim());
      }
    }
    else node.setAttribute(key, String(value));
  }
  for (const child of children.flat()) {
    if (child !== undefined && child !== null) node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function clear(node) { while (node.firstChild) node.removeChild(node.firstChild); return node; }

function part(parameter, name) {
  const found = (parameter.part || []).find((p) => p.name === name);
  if (!found) return undefined;
  const key = Object.keys(found).find((k) => k.startsWith("value"));
  return key ? found[key] : undefined;
}

function named(result, name) { return (result.parameter || []).filter((p) => p.name === name); }

function value(result, name) {
  const found = named(result, name)[0];
  if (!found) return undefined;
  const key = Object.keys(found).find((k) => k.startsWith("value"));
  return key ? found[key] : found.resource;
}

function requestBody(store) {
  const form = document.getElementById("diet-form");
  const parameter = [];
  for (const box of form.querySelectorAll("input[name=profile]:checked")) parameter.push({ name: "profile", valueCode: box.value });
  for (const box of form.querySelectorAll("input[name=pattern]:checked")) parameter.push({ name: "pattern", valueCode: box.value });
  parameter.push({ name: "objective", valueCode: form.objective.value });
  const max = Number(form.maxServingsPerFood.value);
  if (max) parameter.push({ name: "maxServingsPerFood", valueDecimal: max });
  if (form.activity.value) parameter.push({ name: "activity", valueCode: form.activity.value });
  if (form.integer.checked) {
    parameter.push({ name: "integer", valueBoolean: true });
    parameter.push({ name: "servingStep", valueDecimal: Number(form.servingStep.value) });
  }
  for (const food of excluded) parameter.push({ name: "exclude", valueString: food });
  parameter.push({ name: "store", valueBoolean: store });
  return { resourceType: "Parameters", parameter };
}

function renderMeals(result) {
  const meals = clear(document.getElementById("meals"));
  const foods = named(result, "food");
  if (!foods.length) return;
  const table = el("table", { id: "plan-table" },
    el("thead", {}, el("tr", {}, ...["Food", "Meals", "Servings", "Grams", ""].map((h) => el("th", { text: h })))));
  const body = el("tbody");
  for (const food of foods) {
    const id = part(food, "food");
    const mealCodes = (food.part || []).filter((p) => p.name === "meal").map((p) => p.valueCode).join(", ");
    const swap = el("button", { type: "button", className: "swap", "data-food": id, text: "Swap" });
    swap.addEventListener("click", () => { excluded.add(id); renderExcluded(); optimise(false); });
    body.append(el("tr", { "data-food": id },
      el("td", { text: part(food, "name") }),
      el("td", { text: mealCodes }),
      el("td", { text: `${Number(part(food, "servings")).toFixed(2)} × ${part(food, "serving")}` }),
      el("td", { text: Number(part(food, "grams")).toFixed(0) }),
      el("td", {}, swap)));
  }
  table.append(body);
  meals.append(el("h2", { text: "Foods for the day" }), table,
    el("p", { className: "hint", text: `Sample cost $${Number(value(result, "cost") || 0).toFixed(2)} a day` }));
}

function renderBars(result) {
  const bars = clear(document.getElementById("bars"));
  const totals = named(result, "total");
  if (!totals.length) return;
  bars.append(el("h2", { text: "Nutrients against targets" }));
  for (const total of totals) {
    const nutrient = part(total, "nutrient");
    const amount = Number(part(total, "value"));
    const min = part(total, "min");
    const max = part(total, "max");
    const scale = Math.max(amount, Number(max || 0), Number(min || 0)) * 1.15 || 1;
    const ok = (min === undefined || amount >= Number(min) * 0.999) && (max === undefined || amount <= Number(max) * 1.001);
    const track = el("div", { className: "track" },
      el("div", { className: `fill ${ok ? "ok" : "off"}`, style: `width:${(100 * amount) / scale}%` }));
    if (min !== undefined) track.append(el("div", { className: "mark min", style: `left:${(100 * Number(min)) / scale}%`, title: `min ${min}` }));
    if (max !== undefined) track.append(el("div", { className: "mark max", style: `left:${(100 * Number(max)) / scale}%`, title: `max ${max}` }));
    const limits = [min !== undefined ? `≥ ${Number(min).toFixed(0)}` : "", max !== undefined ? `≤ ${Number(max).toFixed(0)}` : ""].filter(Boolean).join(" ");
    bars.append(el("div", { className: "bar", "data-nutrient": nutrient },
      el("span", { className: "label", text: nutrient.replace("-", " ") }), track,
      el("span", { className: "amount", text: `${amount.toFixed(amount >= 10 ? 0 : 1)} ${part(total, "unit")} ${limits}` })));
  }
}

function renderExplanation(result) {
  const box = clear(document.getElementById("explanation"));
  const parts = named(result, "explanation");
  if (!parts.length) return;
  box.append(el("h2", { text: "Why no plan is possible" }));
  const list = el("ul", { id: "conflicts" });
  for (const item of parts) {
    const relax = part(item, "relaxTo");
    list.append(el("li", { "data-constraint": part(item, "id") },
      `Conflict ${part(item, "conflict")}: ${part(item, "constraint")}`,
      relax !== undefined ? ` — relax to ${Number(relax).toFixed(1)}` : ""));
  }
  box.append(list);
}

function renderOrder(order) {
  const box = clear(document.getElementById("order"));
  if (!order) return;
  lastOrder = order;
  const status = el("p", { id: "order-status", text: order.id ? `NutritionOrder/${order.id}: ${order.status}` : "Not stored" });
  box.append(el("h2", { text: "Order" }), status);
  if (!order.id) {
    const save = el("button", { id: "save-draft", type: "button", text: "Save as draft order" });
    save.addEventListener("click", () => optimise(true));
    box.append(save);
  } else if (order.status === "draft") {
    const approve = el("button", { id: "approve", type: "button", text: "Approve (dietitian)" });
    approve.addEventListener("click", approveOrder);
    box.append(approve);
  }
}

function renderExcluded() {
  document.getElementById("excluded").textContent = excluded.size ? `Swapped out: ${[...excluded].join(", ")}` : "";
}

async function approveOrder() {
  const status = document.getElementById("status");
  try {
    const order = await fhir(`NutritionOrder/${encodeURIComponent(lastOrder.id)}/$diet-approve`, { method: "POST", body: { resourceType: "Parameters", parameter: [] } });
    renderOrder(order);
    status.textContent = "Approved: the order is active.";
  } catch (error) {
    status.textContent = `Approval refused: ${error.message}`;
  }
}

async function optimise(store) {
  const status = document.getElementById("status");
  status.textContent = store ? "Saving…" : "Optimising…";
  document.body.dataset.state = "busy";
  try {
    const result = await fhir(`Patient/${encodeURIComponent(patientId)}/$diet-optimise`, { method: "POST", body: requestBody(store) });
    const outcome = value(result, "status");
    const used = named(result, "profileVersion").map((p) => p.valueString.split("|")[0]);
    const profiles = used.filter((p) => p !== "general" || used.length === 1);
    for (const box of document.querySelectorAll("input[name=profile]")) box.checked = profiles.includes(box.value);
    const lead = outcome === "optimal" ? "Optimal plan" : "Infeasible: the targets conflict";
    status.textContent = `${lead} — profiles ${profiles.join(" + ")}; ${value(result, "energy")}`;
    document.getElementById("status").dataset.outcome = outcome;
    renderExplanation(result);
    renderMeals(result);
    renderBars(result);
    renderOrder(outcome === "optimal" ? value(result, "nutritionOrder") : null);
  } catch (error) {
    status.textContent = `Error: ${error.message}`;
    status.dataset.outcome = "error";
  } finally {
    document.body.dataset.state = "ready";
  }
}

async function loadPatient() {
  if (!patientId) {
    document.getElementById("status").textContent = "Open a patient's chart and choose 'Open the diet optimiser'.";
    document.getElementById("optimise").disabled = true;
    return;
  }
  document.getElementById("back").setAttribute("href", `/ui/patients/${encodeURIComponent(patientId)}`);
  try {
    const patient = await fhir(`Patient/${encodeURIComponent(patientId)}`);
    const name = (patient.name || [])[0] || {};
    document.getElementById("patient-name").textContent = `— ${name.text || [...(name.given || []), name.family].filter(Boolean).join(" ")}`;
    document.getElementById("patient-facts").textContent = `${patient.gender || ""} ${patient.birthDate ? `born ${patient.birthDate}` : ""}`.trim();
  } catch (error) {
    document.getElementById("status").textContent = `Error: ${error.message}`;
  }
}

document.getElementById("diet-form").addEventListener("submit", (event) => { event.preventDefault(); optimise(false); });
loadPatient().then(() => { document.body.dataset.ready = "true"; });
