// The OSCAR admin page: status, cursors, runs, dead letters and write-backs, read from
// /plugins/oscar/status with the signed-in user's token; "Run now" posts /plugins/oscar/sync.
// Every value is inserted as text.
import { authHeaders, signIn } from "/ui/static/fhir.js";

const root = document.getElementById("oscar");
const prefix = root.dataset.prefix;
const REFRESH_MS = 2000;
// After "Run now", the run's row appears when its thread starts: follow until then.
let followUntil = 0;

function el(tag, props = {}, ...children) {
  const node = Object.assign(document.createElement(tag), props);
  node.append(...children.map((c) => (c instanceof Node ? c : String(c ?? ""))));
  return node;
}

function table(testId, headers, rows, empty) {
  if (!rows.length) return el("p", { className: "muted" }, empty);
  const head = el("tr", {}, ...headers.map((h) => el("th", {}, h)));
  const body = rows.map((row) => el("tr", {}, ...row.map((cell) => el("td", {}, cell ?? ""))));
  const node = el("table", {}, head, ...body);
  node.dataset.testid = testId;
  return node;
}

function tagged(node, testId) {
  node.dataset.testid = testId;
  return node;
}

async function call(method, path) {
  const response = await fetch(`${prefix}${path}`, {
    method,
    headers: { Accept: "application/json", ...authHeaders() },
  });
  if (response.status === 401) {
    sessionStorage.removeItem("fhirhub.token");
    signIn();
  }
  let data = null;
  try {
    data = await response.json();
  } catch (_) {
    data = null;
  }
  if (!response.ok) {
    const reason = (data?.issue || []).map((i) => i.diagnostics || i.code).join("; ");
    throw new Error(reason || `HTTP ${response.status}`);
  }
  return data;
}

function render(info, notice) {
  const parts = [];
  if (!info.configured) {
    parts.push(
      tagged(
        el("p", {}, "No OSCAR source is configured. Set [plugin.oscar] database (a read-only replica), ",
          "url with OAuth credentials, or soap_username; see docs/oscar.md."),
        "not-configured",
      ),
    );
    root.replaceChildren(...parts);
    return;
  }
  const demo = info.source === "demo" ? " (demo data: a synthetic clinic, not a live OSCAR)" : "";
  parts.push(
    tagged(
      el("p", {}, "Instance ", el("b", {}, info.instance), ", source ", el("b", {}, info.source), demo,
        `; tenant ${info.tenant || "none"}; periodic sync every ${info.interval_s} s.`),
      "summary",
    ),
  );
  if (notice) parts.push(tagged(el("p", { className: notice.ok ? "ok" : "muted" }, notice.text), "started"));
  if (info.last_error) parts.push(tagged(el("p", { className: "error" }, `Last error: ${info.last_error}`), "last-error"));
  const run = tagged(el("button", { type: "button" }, "Run now"), "run-now");
  run.addEventListener("click", runNow);
  parts.push(run);
  const cursors = Object.entries(info.cursors).sort(([a], [b]) => a.localeCompare(b));
  parts.push(el("h2", {}, "Cursors"));
  parts.push(
    tagged(
      table("cursors", ["stream", "last update", "last key", "records", "synced at"],
        cursors.map(([name, c]) => [name, c.updated, c.key, c.records, c.synced_at]), "No sync has run yet."),
      "cursors",
    ),
  );
  parts.push(el("h2", {}, "Recent runs"));
  parts.push(
    tagged(
      table("runs", ["#", "mode", "status", "started", "finished", "records", "written", "dead letters", "error"],
        info.runs.map((r) => [r.id, r.mode, r.status, r.started, r.finished, r.records, r.resources, r.dead_letters, r.error]),
        "No runs yet."),
      "runs",
    ),
  );
  parts.push(el("h2", {}, `Dead letters (${info.dead_letter_count} open)`));
  parts.push(
    tagged(
      table("dead-letters", ["stream", "key", "reason", "task", "at"],
        info.dead_letters.map((d) => [d.stream, d.key, d.reason, `Task/${d.task_id}`, d.at]), "None."),
      "dead-letters",
    ),
  );
  parts.push(el("h2", {}, "Write-back to OSCAR"));
  parts.push(
    tagged(
      table("writeback", ["resource", "version", "status", "attempts", "OSCAR key", "last error", "updated"],
        info.writeback.map((w) => [`${w.resource_type}/${w.resource_id}`, w.version_id, w.status, w.attempts,
          w.oscar_key, w.last_error, w.updated]), "Nothing sent."),
      "writeback",
    ),
  );
  root.replaceChildren(...parts);
  const running = info.runs.some((r) => r.status === "running");
  root.dataset.running = String(running);
  if (running || Date.now() < followUntil) setTimeout(() => refresh(notice), REFRESH_MS);
}

async function refresh(notice) {
  try {
    render(await call("GET", "/status"), notice);
  } catch (error) {
    root.replaceChildren(tagged(el("p", { className: "error" }, `Not available: ${error.message}`), "refused"));
  }
}

async function runNow() {
  try {
    const answer = await call("POST", "/sync");
    followUntil = Date.now() + 15000;
    await refresh(answer.started ? { ok: true, text: "Sync started." } : { ok: false, text: "A sync is already running." });
  } catch (error) {
    root.replaceChildren(tagged(el("p", { className: "error" }, `Not available: ${error.message}`), "refused"));
  }
}

refresh(null);
