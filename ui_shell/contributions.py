"""Collecting what plugins contribute to the shell's pages (patient panels, top-bar items):
every enabled plugin's answer to one hook, each entry checked by the caller's parser, ids
unique, sorted by (order, title). A malformed entry is logged with its plugin's name and left
out; the page still renders."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from fhirhub.sdk import call_hook

if TYPE_CHECKING:
    from fhirhub.sdk import Hub

log = logging.getLogger("fhirhub.ui_shell")

#: An HTML id fragment: the entry's element is ``<kind>-<id>``.
ENTRY_ID = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,63}$")
DEFAULT_ORDER = 100


class Contribution(Protocol):
    @property
    def id(self) -> str: ...
    @property
    def title(self) -> str: ...
    @property
    def order(self) -> int: ...


C = TypeVar("C", bound=Contribution)


def collect(hub: Hub, hook: str, kind: str, parse: Callable[[str, Any], C | None]) -> list[C]:
    """``parse(plugin_name, spec)`` of every entry the plugins answer ``hook`` with (a list,
    or one entry); the first of an id wins, a later one is logged as ``kind``."""
    entries: list[C] = []
    seen: set[str] = set()
    for plugin, results in call_hook(hub, hook, hub=hub):
        name = hub.plugins.get_name(plugin) or repr(plugin)
        for spec in results if isinstance(results, list | tuple) else [results]:
            entry = parse(name, spec)
            if entry is None:
                continue
            if entry.id in seen:
                log.error("Plugin %s: %s id %r is already used; ignored", name, kind, entry.id)
                continue
            seen.add(entry.id)
            entries.append(entry)
    return sorted(entries, key=lambda entry: (entry.order, entry.title.casefold()))


def order_of(spec: dict[str, Any]) -> int:
    """The entry's ``order``, the default when it is missing or not an integer."""
    order = spec.get("order", DEFAULT_ORDER)
    return order if isinstance(order, int) and not isinstance(order, bool) else DEFAULT_ORDER
