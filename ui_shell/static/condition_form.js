// "Add condition" under the Conditions panel: a diagnosis typeahead over ICD-10-CM
// (ValueSet/$expand on the implicit value set, http://hl7.org/fhir/R4/valueset-operation-expand.html)
// and a POST of the Condition, both through the public FHIR API with the user's token. Where
// the hub does not answer $expand for ICD-10-CM (no terminology plugin, or ICD-10-CM not
// loaded) the form records the diagnosis as text (Condition.code.text) and says so.
// The list follows the WAI-ARIA combobox pattern: the input keeps focus, arrow keys move the
// active option (aria-activedescendant), Enter chooses it, Escape closes the list.
import { FhirRequestError, clear, debounce, el, fhirGet, fhirPost } from "./fhir.js";

export const ICD10CM = "http://hl7.org/fhir/sid/icd-10-cm";
const VALUE_SET = `${ICD10CM}?fhir_vs`;
const PAGE = 20;
const MIN_CHARS = 2;
const CLINICAL = "http://terminology.hl7.org/CodeSystem/condition-clinical";
const VERIFICATION = "http://terminology.hl7.org/CodeSystem/condition-ver-status";
const CATEGORY = "http://terminology.hl7.org/CodeSystem/condition-category";

function expandUrl(text, count) {
  const filter = text ? `&filter=${encodeURIComponent(text)}` : "";
  return `ValueSet/$expand?url=${encodeURIComponent(VALUE_SET)}${filter}&count=${count}`;
}

/** The Condition the form records (http://hl7.org/fhir/R4/condition.html). */
export function conditionResource(patientId, chosen, text) {
  const code = chosen
    ? { coding: [{ system: ICD10CM, code: chosen.code, display: chosen.display }], text: chosen.display }
    : { text };
  return {
    resourceType: "Condition",
    clinicalStatus: { coding: [{ system: CLINICAL, code: "active", display: "Active" }] },
    verificationStatus: { coding: [{ system: VERIFICATION, code: "confirmed", display: "Confirmed" }] },
    category: [{ coding: [{ system: CATEGORY, code: "problem-list-item", display: "Problem List Item" }] }],
    code,
    subject: { reference: `Patient/${patientId}` },
    recordedDate: new Date().toISOString(),
  };
}

/** Add the form to a panel section; `codeLookup`: the hub serves ValueSet/$expand;
 * `onSaved()` reloads what shows conditions. */
export function conditionForm(section, patientId, codeLookup, onSaved) {
  const ids = (name) => `${section.id}-${name}`;
  const input = el("input", {
    id: ids("input"),
    type: "text",
    autocomplete: "off",
    role: "combobox",
    "aria-autocomplete": "list",
    "aria-expanded": "false",
    "aria-controls": ids("options"),
    placeholder: "Diagnosis, e.g. type 2 diabetes",
  });
  const list = el("ul", {
    id: ids("options"),
    role: "listbox",
    "aria-label": "ICD-10-CM codes",
    className: "search-results",
    hidden: "",
  });
  const submit = el("button", { type: "submit", text: "Add" });
  const mode = el("p", { className: "muted form-note", id: ids("mode") });
  const status = el("p", { className: "form-status", id: ids("status"), role: "status" });
  const form = el(
    "form",
    { className: "entry-form", "aria-label": "Add condition", "data-coded": "pending" },
    el("label", { for: input.id, text: "Add condition" }),
    el("div", { className: "combo" }, input, list),
    submit,
    mode,
    status,
  );
  section.append(form);

  let coded = false;
  let options = [];
  let active = -1;
  let chosen = null;
  let inflight = null;

  function say(text, kind = "") {
    status.textContent = text;
    status.className = `form-status ${kind}`.trim();
    status.setAttribute("role", kind === "error" ? "alert" : "status");
  }

  function useText(reason) {
    coded = false;
    form.dataset.coded = "false";
    mode.textContent = `Coded lookup is unavailable (${reason}): the condition is recorded as text.`;
    close();
  }

  function close() {
    list.hidden = true;
    input.setAttribute("aria-expanded", "false");
    input.removeAttribute("aria-activedescendant");
    active = -1;
  }

  function highlight(index) {
    active = index;
    options.forEach((_, i) => {
      const item = document.getElementById(ids(`option-${i}`));
      if (item) item.setAttribute("aria-selected", String(i === index));
    });
    if (index >= 0) {
      const item = document.getElementById(ids(`option-${index}`));
      input.setAttribute("aria-activedescendant", item.id);
      item.scrollIntoView({ block: "nearest" });
    } else {
      input.removeAttribute("aria-activedescendant");
    }
  }

  function choose(index) {
    const option = options[index];
    if (!option) return;
    chosen = option;
    input.value = option.display;
    form.dataset.chosen = option.code;
    say(`Chosen: ${option.code} ${option.display}`, "muted");
    close();
  }

  function show(contains, total) {
    options = contains
      .filter((c) => c.code && !c.abstract)
      .map((c) => ({ code: c.code, display: c.display || c.code }));
    clear(list).append(
      ...options.map((option, i) =>
        el(
          "li",
          { id: ids(`option-${i}`), role: "option", "aria-selected": "false", "data-code": option.code },
          el("strong", { text: option.code }),
          " ",
          option.display,
        ),
      ),
    );
    if (!options.length) {
      list.append(el("li", { className: "muted", role: "presentation", text: "No matching ICD-10-CM code" }));
    } else if (total > options.length) {
      list.append(el("li", { className: "muted", role: "presentation", text: `${total} codes match; type more to narrow` }));
    }
    list.hidden = false;
    input.setAttribute("aria-expanded", "true");
    highlight(-1);
  }

  const lookup = debounce(async (text) => {
    if (inflight) inflight.abort();
    inflight = new AbortController();
    try {
      const expansion = await fhirGet(expandUrl(text, PAGE), { signal: inflight.signal });
      if (input.value.trim() !== text) return; // typed on meanwhile
      const found = (expansion.expansion || {}).contains || [];
      show(found, (expansion.expansion || {}).total || found.length);
      form.dataset.results = String(options.length);
    } catch (error) {
      if (error.name === "AbortError") return;
      if (error instanceof FhirRequestError && error.status === 404) {
        useText(error.message);
        say("Type the diagnosis and add it as text.", "muted");
      }
      else say(`Code lookup failed: ${error.message}`, "error");
    }
  }, 250);

  input.addEventListener("input", () => {
    chosen = null;
    delete form.dataset.chosen;
    const text = input.value.trim();
    if (!coded || text.length < MIN_CHARS) {
      close();
      return;
    }
    lookup(text);
  });

  input.addEventListener("keydown", (event) => {
    const open = !list.hidden && options.length > 0;
    if (event.key === "ArrowDown" || event.key === "ArrowUp") {
      if (!options.length) return;
      event.preventDefault();
      if (list.hidden) {
        list.hidden = false;
        input.setAttribute("aria-expanded", "true");
      }
      const step = event.key === "ArrowDown" ? 1 : -1;
      highlight((active + step + options.length) % options.length);
    } else if (event.key === "Enter" && open && active >= 0) {
      event.preventDefault(); // choose; the next Enter submits
      choose(active);
    } else if (event.key === "Escape" && !list.hidden) {
      event.preventDefault();
      close();
    }
  });

  // mousedown, not click: the input keeps focus and the list is still there to be clicked.
  list.addEventListener("mousedown", (event) => {
    const item = event.target.closest("[role=option]");
    if (!item) return;
    event.preventDefault();
    choose(options.findIndex((o) => o.code === item.dataset.code));
  });
  input.addEventListener("blur", () => close());

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const text = input.value.trim();
    if (coded && !chosen) {
      say("Choose a code from the list (type at least two letters).", "error");
      return;
    }
    if (!coded && !text) {
      say("Type the diagnosis.", "error");
      return;
    }
    submit.disabled = true;
    say("Saving…", "muted");
    try {
      const saved = await fhirPost("Condition", conditionResource(patientId, chosen, text));
      const what = chosen ? `${chosen.code} ${chosen.display}` : text;
      input.value = "";
      chosen = null;
      delete form.dataset.chosen;
      form.dataset.saved = saved.id;
      say(`Added: ${what}`);
      await onSaved();
    } catch (error) {
      say(`Not saved: ${error.message}`, "error");
    } finally {
      submit.disabled = false;
    }
  });

  // The page says whether the hub serves ValueSet/$expand (an enabled plugin registered it);
  // whether ICD-10-CM is loaded shows at the first lookup (a 404 switches to text).
  if (codeLookup) {
    coded = true;
    form.dataset.coded = "true";
    mode.textContent = "Coded from ICD-10-CM: type two letters or more and choose from the list.";
  } else {
    useText("no terminology service");
  }
  return form;
}
