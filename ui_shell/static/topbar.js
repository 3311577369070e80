// Top-bar items contributed by plugins (the ui_topbar_items hook): the shell opens and closes
// each item's dropdown panel and tells the plugin's script through events on the item's
// element ("topbar:open", "topbar:close"); the plugin's script fills the badge and the panel.

function setOpen(item, open) {
  const button = item.querySelector(".topbar-button");
  const panel = item.querySelector(".topbar-panel");
  if (!button || !panel || panel.hidden === !open) return;
  panel.hidden = !open;
  button.setAttribute("aria-expanded", String(open));
  item.dispatchEvent(new CustomEvent(open ? "topbar:open" : "topbar:close"));
}

function setup() {
  const items = [...document.querySelectorAll(".topbar-item")];
  for (const item of items) {
    item.querySelector(".topbar-button")?.addEventListener("click", () => {
      const panel = item.querySelector(".topbar-panel");
      for (const other of items) if (other !== item) setOpen(other, false);
      setOpen(item, panel.hidden);
    });
  }
  document.addEventListener("click", (event) => {
    for (const item of items) if (!item.contains(event.target)) setOpen(item, false);
  });
  document.addEventListener("keydown", (event) => {
    if (event.key === "Escape") for (const item of items) setOpen(item, false);
  });
}

setup();
