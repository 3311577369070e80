"""The shell's navigation: core pages plus the ``ui_pages`` of every enabled plugin.

Navigation is collected on every request, so a plugin that is disabled (by configuration, or
because one of its hooks raised and :func:`fhirhub.sdk.call_hook` unregistered it)
disappears from the menu without a restart. Page descriptions are plain data from plugins;
malformed ones are reported in the log with the plugin's name and left out, rather than
breaking the shell for every other plugin.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from fhirhub.sdk import call_hook

if TYPE_CHECKING:
    from fhirhub.sdk import Hub

log = logging.getLogger("fhirhub.ui_shell")

#: Plugin pages must be local paths: no scheme, no protocol-relative ``//host`` links.
LOCAL_PATH = re.compile(r"^/(?!/)[^\s\\]*$")
DEFAULT_ORDER = 100


@dataclass(frozen=True)
class NavItem:
    """One menu entry. ``href`` is where the shell links; ``path`` the page's own route."""

    title: str
    href: str
    path: str
    icon: str = ""
    order: int = DEFAULT_ORDER
    plugin: str | None = None  # None for the shell's own pages


def core_pages(root: str = "") -> list[NavItem]:
    """The shell's own pages; they are always present."""
    return [
        NavItem("Dashboard", f"{root}/", "/", icon="◧", order=0),
        NavItem("Patients", f"{root}/ui/patients", "/ui/patients", icon="☰", order=1),
    ]


def plugin_pages(hub: Hub, root: str = "") -> list[NavItem]:
    """``ui_pages`` of the enabled plugins, validated, sorted by (order, title)."""
    items: list[NavItem] = []
    for plugin, pages in call_hook(hub, "ui_pages", hub=hub):
        name = hub.plugins.get_name(plugin) or repr(plugin)
        for page in pages if isinstance(pages, list | tuple) else [pages]:
            item = _page_item(name, page, root)
            if item is not None:
                items.append(item)
    return sorted(items, key=lambda item: (item.order, item.title.casefold()))


def navigation(hub: Hub, root: str = "") -> list[NavItem]:
    return core_pages(root) + plugin_pages(hub, root)


def find_plugin_page(hub: Hub, path: str) -> NavItem | None:
    """The enabled plugin page registered for ``path`` (only those may be framed)."""
    for item in plugin_pages(hub):
        if item.path == path:
            return item
    return None


def _page_item(plugin: str, page: Any, root: str) -> NavItem | None:
    if not isinstance(page, dict):
        log.error("Plugin %s: ui_pages entry %r is not a dict; ignored", plugin, page)
        return None
    path, title = page.get("path"), page.get("title")
    if not isinstance(title, str) or not title.strip():
        log.error("Plugin %s: ui_pages entry %r has no title; ignored", plugin, page)
        return None
    if not isinstance(path, str) or not LOCAL_PATH.match(path):
        log.error("Plugin %s: ui_pages path %r is not a local path; ignored", plugin, path)
        return None
    order = page.get("order", DEFAULT_ORDER)
    if not isinstance(order, int) or isinstance(order, bool):
        order = DEFAULT_ORDER
    icon = page.get("icon") or ""
    return NavItem(
        title=title.strip(),
        href=f"{root}/ui/page?path={_quote(path)}",
        path=path,
        icon=str(icon)[:4],
        order=order,
        plugin=plugin,
    )


def _quote(path: str) -> str:
    from urllib.parse import quote

    return quote(path, safe="/")
