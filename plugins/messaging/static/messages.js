// The conversation page: threads of Communications, unread counts, read receipts, and new
// messages live (a streamed text/event-stream read with fetch, so the user's token is sent).
// Message text is inserted as text only (el()), never as HTML.
import { authHeaders, streamRecords } from "/ui/static/fhir.js";

const API = "/plugins/messaging/api";
let state = { me: null, threads: [], selected: null };

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, value);
  for (const child of children) node.append(child instanceof Node ? child : String(child ?? ""));
  return node;
}

async function api(path, options = {}) {
  const response = await fetch(path, {
    ...options,
    headers: { "Content-Type": "application/fhir+json", ...authHeaders(), ...(options.headers || {}) },
  });
  const data = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error((data.issue || []).map((i) => i.diagnostics).join("; ") || response.status);
  return data;
}

const textOf = (m) => (m.payload || []).map((p) => p.contentString || (p.contentAttachment || {}).title || "").join(" ");
const unread = (m) => !m.received && m.status === "in-progress" && m.sender?.reference !== state.me;

function render() {
  const list = document.getElementById("threads");
  list.replaceChildren();
  for (const thread of state.threads) {
    const last = thread.messages[thread.messages.length - 1];
    const item = el("li", { "data-thread": thread.id }, `${last.sender?.reference || "system"}: ${textOf(last).slice(0, 60)}`);
    if (thread.messages.some(unread)) item.classList.add("unread");
    if (thread.id === state.selected) item.classList.add("selected");
    item.addEventListener("click", () => openThread(thread.id));
    list.append(item);
  }
  const conversation = document.getElementById("conversation");
  conversation.replaceChildren();
  const thread = state.threads.find((t) => t.id === state.selected);
  document.getElementById("reply").hidden = !thread;
  if (!thread) return;
  for (const m of thread.messages) {
    conversation.append(el("div", { class: "message", "data-id": m.id },
      el("div", { class: "meta" }, `${m.sender?.reference || "system"} · ${m.sent || ""} · ${m.received ? "read" : "unread"}`),
      el("div", { class: "text" }, textOf(m))));
  }
}

async function load() {
  const summary = await api(`${API}/mailbox`);
  state.me = summary.me;
  state.threads = summary.threads;
  document.getElementById("unread").textContent = String(summary.unread);
  document.getElementById("status").textContent = `Signed in as ${summary.me}`;
  render();
}

async function openThread(id) {
  state.selected = id;
  const thread = state.threads.find((t) => t.id === id);
  for (const m of thread.messages.filter(unread)) {
    await api(`${API}/messages/${encodeURIComponent(m.id)}/read`, { method: "POST" });
  }
  await load();
}

async function send(text, to, about, inResponseTo) {
  const message = {
    resourceType: "Communication",
    status: "in-progress",
    category: [{ coding: [{ system: "http://fhirhub.org/fhir/CodeSystem/message-category", code: "message" }] }],
    sent: new Date().toISOString(),
    recipient: to.map((reference) => ({ reference })),
    payload: [{ contentString: text }],
  };
  if (about) message.subject = { reference: about };
  if (inResponseTo) message.inResponseTo = [{ reference: `Communication/${inResponseTo}` }];
  await api("/fhir/Communication", { method: "POST", body: JSON.stringify(message) });
  await load();
}

document.getElementById("compose").addEventListener("submit", async (event) => {
  event.preventDefault();
  await send(document.getElementById("text").value, [document.getElementById("to").value.trim()],
    document.getElementById("about").value.trim());
  event.target.reset();
});

document.getElementById("reply").addEventListener("submit", async (event) => {
  event.preventDefault();
  const thread = state.threads.find((t) => t.id === state.selected);
  const last = thread.messages[thread.messages.length - 1];
  const others = new Set([last.sender?.reference, ...(last.recipient || []).map((r) => r.reference)]);
  others.delete(state.me);
  await send(document.getElementById("reply-text").value, [...others].filter(Boolean), last.subject?.reference, last.id);
  event.target.reset();
});

async function listen() {
  // Live: each event names a message that arrived or changed; the mailbox is re-read.
  for (;;) {
    try {
      const response = await fetch(`${API}/stream`, { headers: authHeaders() });
      for await (const record of streamRecords(response)) {
        if (record.startsWith("event: message")) await load();
      }
    } catch (_) { /* reconnect below */ }
    await new Promise((resolve) => setTimeout(resolve, 1000));
  }
}

function showPreferences(p) {
  document.getElementById("email-unavailable").hidden = p.email_available;
  document.getElementById("email-notifications").checked = p.notifications;
  document.getElementById("email-messages").checked = p.messages;
  document.getElementById("email-address").value = p.address || "";
  document.getElementById("email-effective").textContent = p.effective_address || "none (add an address)";
  const d = p.delivery;
  let text = `Sent: ${d.sent}, waiting: ${d.pending}, failed: ${d.failed}.`;
  if (d.last_error) text += ` Last problem: ${d.last_error.error} (${d.last_error.attempts} attempts).`;
  document.getElementById("email-delivery").textContent = text;
}

document.getElementById("settings").addEventListener("submit", async (event) => {
  event.preventDefault();
  const status = document.getElementById("settings-status");
  try {
    showPreferences(await api(`${API}/preferences`, {
      method: "PUT",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({
        notifications: document.getElementById("email-notifications").checked,
        messages: document.getElementById("email-messages").checked,
        address: document.getElementById("email-address").value.trim() || null,
      }),
    }));
    status.textContent = "Saved";
  } catch (e) {
    status.textContent = `Not saved: ${e.message}`;
  }
});

function threadFromHash() {
  const match = /thread=([A-Za-z0-9\-.]+)/.exec(window.location.hash);
  return match ? match[1] : null;
}

async function start() {
  await load();
  const wanted = threadFromHash();
  if (wanted && state.threads.some((t) => t.id === wanted)) await openThread(wanted);
  api(`${API}/preferences`).then(showPreferences).catch(() => {});
  await listen();
}

start().catch((e) => { document.getElementById("status").textContent = `Could not load: ${e.message}`; });
