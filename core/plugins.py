"""Plugin discovery and activation.

Built-in features are listed in :data:`DEFAULT_PLUGINS` and registered exactly like plugins
found through the ``fhirhub.plugins`` entry-point group. ``FHIRHUB_PLUGINS`` (or ``plugins`` in
the TOML file) is a comma list: names alone form an allow-list, ``-name`` blocks one, ``+name``
adds an opt-in plugin (:data:`OPT_IN_PLUGINS`, the ``hello`` example) to the defaults.
A plugin that fails to import or whose registration hooks raise is reported and disabled; the
hub still starts.
"""

from __future__ import annotations

import importlib
import logging
import os
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any

import pluggy

from fhirhub.core import hookspecs

if TYPE_CHECKING:
    from fhirhub.core.hub import Hub
    from fhirhub.core.settings import Settings

log = logging.getLogger("fhirhub.plugins")

ENTRY_POINT_GROUP = "fhirhub.plugins"

#: Built-in plugins: (name, module). Registered like entry-point plugins.
DEFAULT_PLUGINS: tuple[tuple[str, str], ...] = (
    ("core-dispatch", "fhirhub.core.dispatcher"),
    ("core-operations", "fhirhub.core.builtin_operations"),
    ("core-search-parameters", "fhirhub.core.search_parameters"),
    ("core-ui", "fhirhub.ui_shell.plugin"),
    ("core-ui-panels", "fhirhub.ui_shell.core_panels"),
    ("hl7", "fhirhub.adapters.hl7.plugin"),
    ("dicom", "fhirhub.adapters.dicom.plugin"),
    ("oscar", "fhirhub.adapters.oscar.plugin"),
    ("hello", "fhirhub.plugins.hello"),
    ("security", "fhirhub.plugins.security"),
    ("audit", "fhirhub.plugins.audit"),
    ("integrity", "fhirhub.plugins.integrity"),
    ("diet", "fhirhub.plugins.diet"),
    ("mpi", "fhirhub.plugins.mpi"),
    ("subscriptions", "fhirhub.plugins.subscriptions"),
    ("messaging", "fhirhub.plugins.messaging"),
    ("ai", "fhirhub.plugins.ai"),
    ("terminology", "fhirhub.plugins.terminology"),
    ("knowledge", "fhirhub.plugins.knowledge"),
    ("imaging_ai", "fhirhub.plugins.imaging_ai"),
    ("ohif", "fhirhub.plugins.ohif"),
    ("vitals", "fhirhub.plugins.vitals"),
)

#: Built-ins that load only when named (``FHIRHUB_PLUGINS=+hello`` adds one to the defaults,
#: ``hello,...`` in an allow-list): examples, not features.
OPT_IN_PLUGINS: frozenset[str] = frozenset({"hello"})


@dataclass
class PluginInfo:
    name: str
    version: str
    source: str  # "builtin" or the distribution name of an entry point
    module: str
    enabled: bool = True
    error: str | None = None
    hooks: list[str] = field(default_factory=list)
    #: Declared needs (the plugin's ``MANIFEST``): FHIR resource types and SMART scopes.
    resource_types: list[str] = field(default_factory=list)
    scopes: list[str] = field(default_factory=list)


def parse_selection(value: str) -> tuple[set[str], set[str], set[str]]:
    """``FHIRHUB_PLUGINS``: ``a,b`` loads only those (and the core), ``-a`` leaves one out,
    ``+a`` adds an opt-in plugin to the defaults. Returns (allow, block, add)."""
    allow: set[str] = set()
    block: set[str] = set()
    add: set[str] = set()
    for item in (part.strip() for part in value.split(",")):
        if not item:
            continue
        if item.startswith("-"):
            block.add(item[1:])
        elif item.startswith("+"):
            add.add(item[1:])
        else:
            allow.add(item)
    return allow, block, add


def make_plugin_manager(
    settings: Settings, *, extra_plugins: list[Any] | None = None
) -> pluggy.PluginManager:
    pm = pluggy.PluginManager(hookspecs.PROJECT_NAME)
    pm.add_hookspecs(hookspecs)
    infos: dict[str, PluginInfo] = {}
    pm.fhirhub_plugin_infos = infos  # type: ignore[attr-defined]
    allow, block, add = parse_selection(settings.plugins)

    def wanted(name: str) -> bool:
        if name in block:
            return False
        if name in OPT_IN_PLUGINS:
            return name in allow or name in add
        return not allow or name in allow or name in add or name.startswith("core")

    candidates: list[tuple[str, str, str, Any]] = []
    for name, module_name in DEFAULT_PLUGINS:
        candidates.append((name, "builtin", "", lambda m=module_name: importlib.import_module(m)))
    for plugin in extra_plugins or []:
        extra_name = getattr(plugin, "PLUGIN_NAME", None) or getattr(
            plugin, "__name__", repr(plugin)
        )
        candidates.append((str(extra_name), "extra", "", lambda p=plugin: p))
    for entry_point in entry_points(group=ENTRY_POINT_GROUP):
        dist = entry_point.dist
        candidates.append(
            (
                entry_point.name,
                dist.name if dist else "entry point",
                dist.version if dist else "",
                entry_point.load,
            )
        )
    for name, source, version, loader in candidates:
        if name in infos:
            log.error("Plugin name %r is used twice; ignoring the one from %s", name, source)
            continue
        info = PluginInfo(name, version, source, "")
        infos[name] = info
        if source != "extra" and not wanted(name):
            info.enabled = False
            continue
        try:
            plugin = loader()
            if pm.is_registered(plugin):  # the same module as an entry point and a test extra
                del infos[name]
                continue
            info.module = getattr(plugin, "__name__", repr(plugin))
            info.version = info.version or str(getattr(plugin, "__version__", "") or "")
            pm.register(plugin, name=name)
            info.hooks = sorted(caller.name for caller in pm.get_hookcallers(plugin) or [])
            manifest = getattr(plugin, "MANIFEST", None) or {}
            info.resource_types = list(manifest.get("resource_types", []))
            info.scopes = list(manifest.get("scopes", []))
        except Exception as exc:  # a broken plugin must not stop the hub
            info.enabled = False
            info.error = f"{type(exc).__name__}: {exc}"
            log.error("Plugin %s failed to load and is disabled: %s", name, info.error)
    pm.check_pending()
    if os.environ.get("FHIRHUB_TRACE_HOOKS"):
        # Log every hook call and its outcome (a switch for plugin authors, like pluggy's).
        pm.trace.root.setwriter(log.info)
        pm.enable_tracing()
    return pm


def plugin_infos(pm: pluggy.PluginManager) -> list[PluginInfo]:
    return list(getattr(pm, "fhirhub_plugin_infos", {}).values())


def _disable(pm: pluggy.PluginManager, plugin: object, exc: BaseException, stage: str) -> None:
    name = pm.get_name(plugin) or repr(plugin)
    infos: dict[str, PluginInfo] = getattr(pm, "fhirhub_plugin_infos", {})
    if name in infos:
        infos[name].enabled = False
        infos[name].error = f"{stage}: {type(exc).__name__}: {exc}"
    log.error("Plugin %s failed in %s and is disabled: %s", name, stage, exc)
    pm.unregister(plugin)


def call_hook(hub: Hub, hook_name: str, /, **kwargs: Any) -> list[tuple[object, Any]]:
    """Call a hook through pluggy, one implementation at a time, so that a plugin whose
    implementation raises is disabled alone and the others still answer.

    The implementations run in pluggy's own order (``tryfirst`` first, then the most recently
    registered, ``trylast`` last) and through pluggy's executor, so ``FHIRHUB_TRACE_HOOKS``
    traces them like any other call. Returns ``(plugin, result)`` for each non-None result.
    For hooks on the write path (``resource_before_write``, ``before_commit``) call
    ``hub.hook.<name>(...)`` directly instead: there a raising plugin vetoes the write.
    """
    pm = hub.plugins
    caller = getattr(pm.hook, hook_name)
    impls = caller.get_hookimpls()
    plain = [impl for impl in impls if not (impl.hookwrapper or impl.wrapper)]
    results: list[tuple[object, Any]] = []
    for impl in reversed(plain):  # pluggy calls the last of get_hookimpls() first
        plugin = impl.plugin
        if not pm.is_registered(plugin):  # disabled by an earlier failure in this call
            continue
        others = [other.plugin for other in plain if other.plugin is not plugin]
        try:
            result = pm.subset_hook_caller(hook_name, remove_plugins=others)(**kwargs)
        except Exception as exc:
            _disable(pm, plugin, exc, hook_name)
            continue
        for value in result if isinstance(result, list) else [result]:
            if value is not None:
                results.append((plugin, value))
    return results


def activate_plugins(hub: Hub) -> None:
    """Collect operations, search parameters and tasks from the enabled plugins."""
    from fhirhub.core.tasks import TaskRunner

    for _plugin, operations in call_hook(hub, "register_operations", hub=hub):
        for operation in operations:
            hub.operations.add(operation)
    for _plugin, parameters in call_hook(hub, "register_search_parameters", hub=hub):
        for parameter in parameters:
            hub.store.registry.add(parameter)
    tasks: dict[str, Any] = {}
    for _plugin, registered in call_hook(hub, "register_tasks", hub=hub):
        tasks.update(registered)
    hub.tasks = TaskRunner(hub, tasks)
    _store_code_systems(hub)


def _store_code_systems(hub: Hub) -> None:
    """Store plugin CodeSystems/ValueSets idempotently: a conditional update by canonical url,
    which writes no new version when the content is what is stored (no-op updates are
    suppressed by the write path)."""
    from fhirhub.core.transaction import Transaction

    for plugin, resources in call_hook(hub, "register_code_systems", hub=hub):
        try:
            with hub.store.unit_of_work() as unit:
                transaction = Transaction(hub, unit)
                for resource in resources:
                    transaction.conditional_update(f"url={resource['url']}", dict(resource))
        except Exception as exc:
            _disable(hub.plugins, plugin, exc, "register_code_systems")


def register_cli_commands(cli: Any) -> None:
    """Let enabled plugins add subcommands (``register_commands``)."""
    from fhirhub.core.settings import load_settings

    try:
        pm = make_plugin_manager(load_settings())
    except Exception as exc:  # the CLI must work even when plugin loading fails
        log.error("Plugins could not be loaded for the CLI: %s", exc)
        return
    for impl in reversed(pm.hook.register_commands.get_hookimpls()):
        others = [other.plugin for other in pm.hook.register_commands.get_hookimpls()]
        try:
            pm.subset_hook_caller(
                "register_commands", remove_plugins=[p for p in others if p is not impl.plugin]
            )(cli=cli)
        except Exception as exc:
            log.error("Plugin %s failed to register commands: %s", impl.plugin_name, exc)
