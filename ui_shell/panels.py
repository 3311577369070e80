"""Patient chart panels: ``ui_patient_panels`` of every enabled plugin, the shell's own included.

The shell renders only placeholders; the browser fills each one from the public FHIR API for
the open patient. A panel says what to fetch in one of two ways:

* ``resource_types``: FHIR types searched with ``?patient=Patient/{id}`` (plus the optional
  ``params`` query string), or ``Patient`` itself, read by id;
* ``url``: a local URL with ``{patient_id}`` in it. A ``/fhir/...`` URL is fetched as a search
  and listed; any other local URL is a page of the plugin, shown in a frame.

``renderer`` (optional) picks one of the shell's renderers (:data:`RENDERERS`); the default,
``table``, lists any resource type with its date, description and status. ``form`` (optional)
adds one of the shell's entry forms (:data:`FORMS`) under the panel: ``add-condition`` records
a Condition for the patient (coded from ICD-10-CM through ``ValueSet/$expand`` where the hub
answers it, as text otherwise), then reloads the panel.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from fhirhub.ui_shell.contributions import DEFAULT_ORDER, ENTRY_ID, collect, order_of
from fhirhub.ui_shell.navigation import LOCAL_PATH

if TYPE_CHECKING:
    from fhirhub.sdk import Hub

log = logging.getLogger("fhirhub.ui_shell")

#: Renderers implemented by ``static/chart.js``.
RENDERERS = frozenset({"table", "demographics", "vitals"})
#: Entry forms implemented by ``static/*.js`` (``add-condition``: ``condition_form.js``).
FORMS = frozenset({"add-condition"})
RESOURCE_TYPE = re.compile(r"^[A-Z][A-Za-z]{1,63}$")


@dataclass(frozen=True)
class Panel:
    id: str
    title: str
    order: int = DEFAULT_ORDER
    resource_types: tuple[str, ...] = ()
    url: str = ""
    params: str = ""
    renderer: str = "table"
    form: str = ""
    plugin: str = ""


def patient_panels(hub: Hub) -> list[Panel]:
    """Panels of the enabled plugins, validated, sorted by (order, title); ids are unique."""
    return collect(hub, "ui_patient_panels", "panel", _panel)


def _panel(plugin: str, spec: Any) -> Panel | None:
    def reject(why: str) -> None:
        log.error("Plugin %s: patient panel %r %s; ignored", plugin, spec, why)

    if not isinstance(spec, dict):
        reject("is not a dict")
        return None
    panel_id, title = spec.get("id"), spec.get("title")
    if not isinstance(panel_id, str) or not ENTRY_ID.match(panel_id):
        reject("needs an id of letters, digits, '-' or '_'")
        return None
    if not isinstance(title, str) or not title.strip():
        reject("has no title")
        return None
    types = spec.get("resource_types") or ()
    if isinstance(types, str):
        types = (types,)
    if not isinstance(types, list | tuple) or not all(
        isinstance(t, str) and RESOURCE_TYPE.match(t) for t in types
    ):
        reject("has invalid resource_types")
        return None
    url = spec.get("url") or ""
    if url and (not isinstance(url, str) or not LOCAL_PATH.match(url)):
        reject("has a url that is not a local path")
        return None
    if bool(types) == bool(url):
        reject("needs exactly one of resource_types or url")
        return None
    params = spec.get("params") or ""
    if not isinstance(params, str) or params.startswith(("?", "&")):
        reject("has params that are not a query string without '?'")
        return None
    renderer = spec.get("renderer") or "table"
    if renderer not in RENDERERS:
        log.warning("Plugin %s: unknown renderer %r; using 'table'", plugin, renderer)
        renderer = "table"
    form = spec.get("form") or ""
    if form and form not in FORMS:
        log.warning("Plugin %s: unknown form %r; panel shown without it", plugin, form)
        form = ""
    order = order_of(spec)
    return Panel(
        id=panel_id,
        title=title.strip(),
        order=order,
        resource_types=tuple(types),
        url=url,
        params=params,
        renderer=renderer,
        form=form,
        plugin=plugin,
    )
