// The notification bell in the UI shell's top bar (the ui_topbar_items hook): the unread
// count on the badge, kept live by the messaging stream, and the latest messages and
// notifications in the dropdown, each linking to its conversation on the Messages page.
// Text from messages is inserted as text only (el()), never as HTML.
import { authHeaders, streamRecords } from "/ui/static/fhir.js";

const ROOT = document.body.dataset.root || "";
const API = `${ROOT}/plugins/messaging/api`;
const PAGE = `${ROOT}/ui/page?path=${encodeURIComponent("/plugins/messaging/page/").replace(/%2F/g, "/")}`;
const item = document.getElementById("topbar-messaging-bell");
const badge = item?.querySelector(".badge");
const panel = item?.querySelector(".topbar-panel");

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, value);
  for (const child of children) node.append(child instanceof Node ? child : String(child ?? ""));
  return node;
}

class Unavailable extends Error {}

async function api(path, options = {}) {
  const response = await fetch(`${API}/${path}`, { ...options, headers: { ...authHeaders(), ...(options.headers || {}) } });
  // 401: not signed in; 403: no Practitioner linked to this user. The bell has nothing to say.
  if (response.status === 401 || response.status === 403) throw new Unavailable(String(response.status));
  if (!response.ok) throw new Error(`HTTP ${response.status}`);
  return response.json();
}

const when = (instant) => {
  const date = new Date(instant);
  return Number.isNaN(date.getTime()) ? instant || "" : date.toLocaleString();
};

function render(data) {
  item.hidden = false;
  badge.textContent = String(data.unread);
  badge.hidden = data.unread === 0;
  item.dataset.unread = String(data.unread);
  const list = el("ul");
  for (const n of data.items) {
    const link = el("a", { href: `${PAGE}#thread=${encodeURIComponent(n.thread)}`, "data-id": n.id },
      el("div", { class: "meta" }, `${n.sender_name} · ${when(n.sent)}${n.category === "message" ? "" : ` · ${n.category}`}`),
      el("div", { class: "text" }, n.text.length > 140 ? `${n.text.slice(0, 140)}…` : n.text));
    if (n.unread) {
      link.addEventListener("click", async (event) => {
        event.preventDefault();
        await api(`messages/${encodeURIComponent(n.id)}/read`, { method: "POST" }).catch(() => {});
        window.location.assign(link.href);
      });
    }
    const row = el("li", n.unread ? { class: "unread" } : {}, link);
    list.append(row);
  }
  const readAll = el("button", { type: "button", class: "read-all" }, "Mark all read");
  readAll.disabled = data.unread === 0;
  readAll.addEventListener("click", async () => {
    await api("read-all", { method: "POST" });
    await refresh();
  });
  const actions = el("div", { class: "actions" }, el("a", { href: PAGE }, "All messages"), readAll);
  panel.replaceChildren(data.items.length ? list : el("p", { class: "muted" }, "No messages yet."), actions);
}

let refreshing = null;
let again = false;
async function refresh() {
  // One request at a time; events arriving meanwhile cause one more.
  if (refreshing) {
    again = true;
    return refreshing;
  }
  refreshing = (async () => {
    do {
      again = false;
      render(await api("notifications?limit=10"));
    } while (again);
  })().finally(() => { refreshing = null; });
  return refreshing;
}

async function listen() {
  // Each stream record names a message to or from this user that was written or read.
  for (;;) {
    try {
      const response = await fetch(`${API}/stream`, { headers: authHeaders() });
      if (response.status === 401 || response.status === 403) return;
      const records = streamRecords(response);
      await refresh(); // whatever arrived while (re)connecting
      item.dataset.live = "connected";
      for await (const record of records) {
        if (record.startsWith("event: message")) await refresh();
      }
    } catch (error) {
      if (error instanceof Unavailable) return;
    }
    item.dataset.live = "reconnecting";
    await new Promise((resolve) => setTimeout(resolve, 1000));
  }
}

async function start() {
  // A user who takes no part in messaging (no linked Practitioner) has no bell.
  const first = await api("notifications?limit=10");
  if (!first.available) throw new Unavailable("not a messaging user");
  render(first);
  await listen();
}

if (item && badge && panel) {
  item.hidden = true; // until it is known to be this user's
  item.addEventListener("topbar:open", () => refresh().catch(() => {}));
  start()
    .catch((error) => {
      // Not a messaging user: no bell.
      if (error instanceof Unavailable) item.hidden = true;
    });
}
