// The administration page: organizations and users, through the plugin's JSON API with the
// shell's bearer token. Text from the server is inserted as text, never as HTML.

const root = document.body.dataset.root || "";
const api = `${root}/plugins/security/admin`;

function headers(extra = {}) {
  const token = sessionStorage.getItem("fhirhub.token");
  return token ? { Authorization: `Bearer ${token}`, ...extra } : extra;
}

async function call(path, options = {}) {
  const response = await fetch(`${api}${path}`, { ...options, headers: headers(options.headers) });
  if (response.status === 401) {
    window.top.location.assign(`${root}/plugins/security/ui/login?next=${encodeURIComponent(window.top.location.pathname + window.top.location.search)}`);
    throw new Error("sign in first");
  }
  const data = await response.json().catch(() => null);
  if (!response.ok) {
    const text = data && data.issue ? data.issue.map((i) => i.diagnostics).join("; ") : `HTTP ${response.status}`;
    throw new Error(text);
  }
  return data;
}

function row(cells) {
  const tr = document.createElement("tr");
  for (const cell of cells) {
    const td = document.createElement("td");
    td.textContent = cell == null ? "" : String(cell);
    tr.append(td);
  }
  return tr;
}

function fill(tableId, rows) {
  const body = document.querySelector(`#${tableId} tbody`);
  body.replaceChildren(...rows.map(row));
}

async function refresh() {
  const me = await call("/me");
  document.getElementById("admin-who").textContent =
    `Signed in as ${me.subject} (${me.roles.join(", ")}${me.tenant ? ", " + me.tenant : ""})`;
  const select = document.querySelector("#invite-form select[name=role]");
  select.replaceChildren(...me.manageable_roles.map((r) => new Option(r, r)));
  document.getElementById("tenant-form").hidden = !me.manages_tenants;
  fill("tenant-table", (await call("/tenants")).map((t) => [t.id, t.name]));
  fill(
    "user-table",
    (await call("/users")).map((u) => [u.username, u.email, u.role, u.tenant, u.disabled ? "disabled" : u.active ? "active" : "invited"]),
  );
}

function submitter(formId, path, done) {
  document.getElementById(formId).addEventListener("submit", async (event) => {
    event.preventDefault();
    const body = Object.fromEntries(new FormData(event.target).entries());
    const message = document.getElementById("admin-message");
    try {
      const answer = await call(path, { method: "POST", body: JSON.stringify(body), headers: { "Content-Type": "application/json" } });
      message.textContent = done(body, answer);
      event.target.reset();
      await refresh();
    } catch (error) {
      message.textContent = String(error.message || error);
    }
  });
}

// Without SMTP the hub answers the link itself (once): the admin hands it to the new user.
submitter("invite-form", "/users", (b, answer) =>
  answer && answer.invitation_link
    ? `No email could be sent: give ${b.username} this link (it works once): ${answer.invitation_link}`
    : `Invitation sent to ${b.email}.`);
submitter("tenant-form", "/tenants", (b) => `Organization ${b.id} created.`);
refresh().catch((error) => {
  document.getElementById("admin-who").textContent = String(error.message || error);
});
