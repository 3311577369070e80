// The patient-chart panel: this patient's latest diet order, and a link to the optimiser.
const patientId = new URLSearchParams(window.location.search).get("patient") || "";
const token = sessionStorage.getItem("fhirhub.token");
const headers = { Accept: "application/fhir+json", ...(token ? { Authorization: `Bearer ${token}` } : {}) };
const status = document.getElementById("panel-status");
document.getElementById("open-optimiser").setAttribute("href", `/plugins/diet/ui/?patient=${encodeURIComponent(patientId)}`);
fetch(`/fhir/NutritionOrder?patient=${encodeURIComponent(patientId)}&_sort=-_lastUpdated&_count=1`, { headers })
  .then((response) => (response.ok ? response.json() : Promise.reject(new Error(`HTTP ${response.status}`))))
  .then((bundle) => {
    const order = ((bundle.entry || [])[0] || {}).resource;
    status.textContent = order ? `Latest diet order: ${order.status} (${(order.dateTime || "").slice(0, 10)})` : "No diet order yet.";
  })
  .catch((error) => { status.textContent = `Diet orders unavailable: ${error.message}`; })
  .finally(() => { document.body.dataset.ready = "true"; });
