// Scroll through a series' rendered frames (WADO-RS), with CT window/level presets.
import { authHeaders, signIn } from "/ui/static/fhir.js";
import { authorizedImage } from "./images.js";

const root = document.getElementById("viewer");
const web = `${root.dataset.prefix}/dicomweb`;
const params = new URLSearchParams(location.search);
const study = params.get("study");
const series = params.get("series");
const image = document.getElementById("frame");
const slider = document.getElementById("slider");
const position = document.getElementById("position");
let instances = [];
let windowPreset = "";

function number(instance) {
  const value = instance["00200013"];
  return value && value.Value ? Number(value.Value[0]) : 0;
}

function show(index) {
  if (!instances.length) return;
  const i = Math.max(0, Math.min(instances.length - 1, index));
  slider.value = String(i);
  const sop = instances[i]["00080018"].Value[0];
  const query = windowPreset ? `?window=${encodeURIComponent(windowPreset)}` : "";
  authorizedImage(image, `${web}/studies/${study}/series/${series}/instances/${sop}/rendered${query}`);
  image.dataset.index = String(i);
  position.textContent = `${i + 1} / ${instances.length}`;
}

async function main() {
  const response = await fetch(`${web}/studies/${study}/series/${series}/instances`, { headers: { Accept: "application/dicom+json", ...authHeaders() } });
  if (response.status === 401) signIn();
  if (!response.ok) throw new Error(`QIDO-RS: HTTP ${response.status}`);
  instances = (response.status === 204 ? [] : await response.json()).sort((a, b) => number(a) - number(b));
  slider.max = String(Math.max(0, instances.length - 1));
  const modality = instances.length && instances[0]["00080060"] ? instances[0]["00080060"].Value[0] : "";
  document.getElementById("title").textContent = `Series ${series} ${modality}`;
  document.getElementById("presets").hidden = modality !== "CT";
  show(0);
}

slider.addEventListener("input", () => show(Number(slider.value)));
image.addEventListener("wheel", (event) => { event.preventDefault(); show(Number(slider.value) + Math.sign(event.deltaY)); });
document.addEventListener("keydown", (event) => {
  if (event.key === "ArrowRight" || event.key === "ArrowDown") show(Number(slider.value) + 1);
  if (event.key === "ArrowLeft" || event.key === "ArrowUp") show(Number(slider.value) - 1);
});
document.getElementById("presets").addEventListener("click", (event) => {
  const button = event.target.closest("button");
  if (!button) return;
  windowPreset = button.dataset.window;
  for (const other of document.querySelectorAll("#presets button")) other.setAttribute("aria-pressed", String(other === button));
  show(Number(slider.value));
});

main().catch((error) => { position.textContent = error.message; });
