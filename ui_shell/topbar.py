"""Top-bar items: ``ui_topbar_items`` of every enabled plugin, on every shell page.

An item is plain data (``{"id", "title", "script", "icon"?, "order"?}``). The shell renders a
button with a hidden badge and a hidden dropdown panel for it, toggles the panel
(``static/topbar.js``), and loads the plugin's ``script`` as a module, which fills badge and
panel from the plugin's API. The shell never imports the plugin: a notification bell, a status
light or a clock is the plugin's business. Malformed items are logged with the plugin's name
and left out, as panels are (:mod:`fhirhub.ui_shell.contributions`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from fhirhub.ui_shell.contributions import DEFAULT_ORDER, ENTRY_ID, collect, order_of
from fhirhub.ui_shell.navigation import LOCAL_PATH

if TYPE_CHECKING:
    from fhirhub.sdk import Hub

log = logging.getLogger("fhirhub.ui_shell")

#: An icon is a glyph or two (an emoji with a variation selector), not markup or text.
MAX_ICON = 4


@dataclass(frozen=True)
class TopbarItem:
    id: str
    title: str
    script: str
    icon: str = ""
    order: int = DEFAULT_ORDER
    plugin: str = ""


def topbar_items(hub: Hub) -> list[TopbarItem]:
    """Items of the enabled plugins, validated, sorted by (order, title); ids are unique."""
    return collect(hub, "ui_topbar_items", "top-bar item", _item)


def _item(plugin: str, spec: Any) -> TopbarItem | None:
    def reject(why: str) -> None:
        log.error("Plugin %s: top-bar item %r %s; ignored", plugin, spec, why)

    if not isinstance(spec, dict):
        reject("is not a dict")
        return None
    item_id, title, script = spec.get("id"), spec.get("title"), spec.get("script")
    if not isinstance(item_id, str) or not ENTRY_ID.match(item_id):
        reject("needs an id of letters, digits, '-' or '_'")
        return None
    if not isinstance(title, str) or not title.strip():
        reject("has no title")
        return None
    if not isinstance(script, str) or not LOCAL_PATH.match(script):
        reject("needs a script that is a local path")
        return None
    icon = spec.get("icon") or ""
    if not isinstance(icon, str) or len(icon) > MAX_ICON:
        reject(f"has an icon that is not a string of at most {MAX_ICON} characters")
        return None
    return TopbarItem(
        id=item_id,
        title=title.strip(),
        script=script,
        icon=icon,
        order=order_of(spec),
        plugin=plugin,
    )
