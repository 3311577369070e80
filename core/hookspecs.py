"""The hook catalogue: every extension point of fhirhub, in one module.

Built-in features (``plugins/*``, ``adapters/*``) implement these hooks exactly like
third-party plugins found through the ``fhirhub.plugins`` entry-point group. Hooks return plain
data (routers, operation definitions, page descriptions); they do not reach into globals.
Unless marked ``firstresult``, every implementation is called and the results are collected
in a list (``None`` results dropped).

Import ``hookimpl`` from :mod:`fhirhub.sdk` to implement them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from fhirhub.core.access import Access
    from fhirhub.core.consumers import Consumer
    from fhirhub.core.hub import Hub
    from fhirhub.core.interactions.write import WriteContext
    from fhirhub.core.operations import Operation
    from fhirhub.core.schedules import Schedule
    from fhirhub.core.transaction import Transaction
    from fhirhub.fhir_store.search.terminology import TokenCodes, TokenModifier, UnitConversion
    from fhirhub.fhir_store.validation.coded_bindings import BoundCode
    from fhirhub.fhir_store.versions import StoredVersion

PROJECT_NAME = "fhirhub"
hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


# -- lifecycle -------------------------------------------------------------------------------


@hookspec
def startup(hub: Hub) -> None:
    """Called once when the hub starts serving (the app's lifespan start), after the store is
    ready and before the dispatcher starts delivering.

    :param hub: the running hub: ``hub.store``, ``hub.settings``, ``hub.tasks``.
    :returns: nothing. Start background work here (listeners, pollers). Raising disables this
        plugin (reported by ``fhirhub plugins`` and the logs); the hub still starts.
    """


@hookspec
def shutdown(hub: Hub) -> None:
    """Called once when the hub stops (the app's lifespan end), after the dispatcher stopped.

    :param hub: the hub being stopped.
    :returns: nothing; release what ``startup`` acquired (threads, sockets, connections).
    """


@hookspec
def health_checks(hub: Hub) -> list[tuple[str, Any]] | None:
    """Called on each ``GET /healthz``.

    :param hub: the running hub.
    :returns: ``[(name, check)]`` where ``check()`` returns ``True``/``False`` or raises;
        ``/healthz`` reports each by name and is unhealthy (503) if any fails.
    """


# -- HTTP ------------------------------------------------------------------------------------


@hookspec
def register_routes(hub: Hub) -> Any:
    """Called once when the FastAPI app is created.

    :param hub: the hub the app serves.
    :returns: a FastAPI ``APIRouter`` (or a list of them), mounted under
        ``/plugins/<plugin name>``; ``None`` for no routes. A router with the attribute
        ``mount_at_root = True`` is mounted as it is, for paths a standard fixes
        (``/fhir/.well-known/smart-configuration``, ``/hl7/v2``); use it sparingly.
    """


@hookspec
def register_operations(hub: Hub) -> list[Operation] | None:
    """Called once while the hub is built (plugin activation).

    :param hub: the hub being built.
    :returns: :class:`fhirhub.sdk.Operation` objects: FHIR ``$operations`` at system, type or
        instance level, each with its OperationDefinition (FHIR R4 §3.1.0 Operations). They are
        routed and listed in the CapabilityStatement automatically.
    """


@hookspec(firstresult=True)
def authenticate_request(request: Any, hub: Hub) -> Access | None:
    """Called for every HTTP request before it is routed (``firstresult``: the first
    implementation returning an :class:`fhirhub.sdk.Access` decides).

    :param request: the Starlette ``Request`` (headers, client address, path).
    :param hub: the running hub.
    :returns: the caller's :class:`fhirhub.sdk.Access` when the request carries credentials
        this plugin accepts; ``None`` when it carries none this plugin knows (the next
        implementation is asked; with nobody accepting, a protected path answers 401). Raise
        :class:`fhirhub.sdk.FhirError` (401) for credentials that are present but invalid:
        expired, forged or revoked tokens must not fall through to another implementation.
    """


@hookspec(firstresult=True)
def capability_security(hub: Hub, base_url: str) -> dict[str, Any] | None:
    """Called on each ``GET /fhir/metadata`` (``firstresult``).

    :param hub: the running hub.
    :param base_url: the FHIR base URL the statement describes.
    :returns: the ``CapabilityStatement.rest.security`` element (for SMART on FHIR: the
        ``oauth-uris`` extension and the ``SMART-on-FHIR`` service code), or ``None``.
    """


@hookspec
def public_paths(hub: Hub) -> list[str] | None:
    """Called once when the FastAPI app is created.

    :param hub: the hub the app serves.
    :returns: URL path prefixes that need no authentication (a login page, OAuth endpoints,
        discovery documents). Everything else under ``/fhir`` and ``/plugins`` is protected
        when ``FHIRHUB_AUTH`` is on. The core's own: ``/healthz``, ``/fhir/metadata``,
        ``/fhir/.well-known/``, ``/.well-known/``, the UI shell's pages and static files.
    """


@hookspec
def request_completed(record: dict[str, Any], hub: Hub) -> None:
    """Called for every HTTP request that was authenticated or refused, once the response
    status is known and before the response starts, on the event loop (keep it quick: queue
    work, do not write to the database here). The client is not answered before it returns,
    so an implementation may make the record durable first (the audit journal does).

    :param record: ``{"access": Access | None, "method", "path", "query" (secret parameter
        values such as tokens and codes already redacted), "status", "remote",
        "interaction", "resource_type", "resource_id", "location", "started", "duration_ms"}``
        (``location``: the response's Location header, which names what a create made) where
        ``interaction`` is the FHIR interaction (``read``, ``vread``, ``search-type``,
        ``create``, ``update``, ``patch``, ``delete``, ``history-*``, ``transaction``,
        ``batch``, ``operation``) or ``http`` for plugin routes, and ``started`` is
        microseconds since the epoch.
    :returns: nothing. This is how the audit trail (``AuditEvent``) is fed.
    """


# -- data ------------------------------------------------------------------------------------


@hookspec
def resource_before_write(resource: dict[str, Any], context: WriteContext) -> None:
    """Called for every create, update, patch and transaction entry inside the write
    transaction, after structural validation and before the version is appended.

    :param resource: the resource as it will be stored (without ``meta.versionId``); a hook
        may modify it in place (enrich).
    :param context: :class:`fhirhub.sdk.WriteContext`: the interaction, the resource type and
        id, the unit of work.
    :returns: nothing. Raise :class:`fhirhub.sdk.FhirError` to veto the write: it becomes an
        OperationOutcome and the whole transaction rolls back.
    """


@hookspec
def before_commit(transaction: Transaction) -> None:
    """Called for every unit of work that ends normally (a REST interaction, a transaction or
    batch entry, an adapter's message, a plugin's :func:`fhirhub.sdk.transaction`), inside its
    database transaction, after its last write and before commit.

    :param transaction: the :class:`fhirhub.sdk.Transaction` about to commit;
        ``transaction.written`` lists every version it wrote (deletion tombstones included).
        A hook may still write through it (a Provenance for what the unit wrote: validated,
        hooked and reference-checked like any write) or read.
    :returns: nothing. Raise :class:`fhirhub.sdk.FhirError` to refuse the whole unit: nothing
        of it is stored. Keep it quick: it runs inside the writer's transaction.
    """


@hookspec
def after_commit(versions: list[StoredVersion], hub: Hub) -> None:
    """Called in the committing thread right after a unit of work committed.

    :param versions: the versions the unit wrote, with their log positions (``seq``).
    :param hub: the hub.
    :returns: nothing. Must be quick and must not raise (wake a worker, invalidate a cache):
        the write has already succeeded. Durable work belongs in ``resource_committed`` or a
        consumer from ``register_consumers``, which survive restarts.
    """


@hookspec
def register_consumers(hub: Hub) -> list[Consumer] | None:
    """Called once while the hub is built.

    :param hub: the hub being built.
    :returns: :class:`fhirhub.sdk.Consumer` objects: named readers of the version log, each
        with its own durable cursor and its own worker thread, so a slow one delays nobody
        else. Use one to keep a projection (an index, a graph, a vector store) in step: it can
        start from the beginning of the log, receives versions in batches, and is reset and
        replayed by ``fhirhub replay``.
    """


@hookspec
def register_schedules(hub: Hub) -> list[Schedule] | None:
    """Called once while the hub is built.

    :param hub: the hub being built.
    :returns: :class:`fhirhub.sdk.Schedule` objects: functions the hub runs every so many
        seconds while it serves (a sync poller, an escalation check, a reminder sender), in one
        API process at a time (PostgreSQL: whichever holds the schedule's advisory lock).
    """


@hookspec
def resource_committed(event: StoredVersion, hub: Hub) -> None:
    """Called after commit for each new version (creates, updates and deletion tombstones), in
    log (``seq``) order, at least once, on the dispatcher's thread or a Celery worker, never on
    the writer's thread.

    :param event: :class:`fhirhub.sdk.StoredVersion`: type, id, version, ``seq``, ``deleted``
        and the stored JSON bytes (``content``).
    :param hub: the hub (on a worker: the worker's own hub on the same database).
    :returns: nothing. A raising implementation is logged and retried from its own position
        with back-off; it never loses or corrupts a write and does not hold other plugins back.
        Make handlers idempotent (a crash can re-deliver the last version).
    """


@hookspec
def register_search_parameters(hub: Hub) -> list[dict[str, Any]] | None:
    """Called once while the hub is built.

    :param hub: the hub being built.
    :returns: SearchParameter resources (as dicts) to activate in addition to the standard
        ones (FHIR R4 §3.1.1.4.5 custom search parameters); their expressions are compiled once.
    """


@hookspec(firstresult=True)
def search_token_codes(request: TokenModifier, hub: Hub) -> TokenCodes | None:
    """Called while a search is planned, for each value of a token parameter with a
    terminology modifier: ``:in``/``:not-in`` (value set membership), ``:below``/``:above``
    (subsumption) (http://hl7.org/fhir/R4/search.html#token). Runs as the searching caller.

    :param request: :class:`fhirhub.sdk.TokenModifier`: the searched type, the parameter, the
        modifier and the value (a ValueSet url, or ``system|code``).
    :param hub: the hub.
    :returns: :class:`fhirhub.sdk.TokenCodes`, the ``(system, code)`` pairs the value stands
        for and/or :class:`fhirhub.sdk.CodeQuery` statements selecting them from tables of the
        hub's database (joined inside the search statement), or None to leave it to another plugin (none answering: the modifier is refused
        as not supported). Raise :class:`fhirhub.sdk.FhirError` for an unknown code system or
        value set (the search fails with that status and message). Only consulted when some
        plugin implements it: without one, the store refuses these modifiers.
    """


@hookspec(firstresult=True)
def search_quantity_units(
    code: str, stored: list[str], hub: Hub
) -> dict[str, UnitConversion] | None:
    """Called while a quantity search with a UCUM unit is planned
    (``value-quantity=ge5.5|http://unitsofmeasure.org|mmol/L``).

    :param code: the searched UCUM unit code.
    :param stored: the unit codes stored for that search parameter.
    :param hub: the hub.
    :returns: ``{stored code: UnitConversion}`` for the stored units the searched value converts
        into (``UnitConversion(factor, offset)``: stored = searched * factor + offset), the
        searched unit itself included; units left out never match. None to leave it to another
        plugin (none answering: only the same unit code matches).
    """


@hookspec(firstresult=True)
def validate_bound_codes(codes: list[BoundCode], hub: Hub) -> list[BoundCode] | None:
    """Called by ``$validate`` (never on a write) with the codings the resource holds in
    elements bound ``extensible`` or ``preferred``
    (http://hl7.org/fhir/R4/terminologies.html#strength). Runs as the validating caller.

    :param codes: :class:`fhirhub.sdk.BoundCode` each: where the coding is (``expression``),
        the binding (``strength``, ``value_set``) and the coding (``system``, ``code``,
        ``version``).
    :param hub: the hub.
    :returns: the codes that are *not* in their bound value set, among those the
        implementation can check (a system it has loaded, a value set it can expand); leave
        out any it cannot tell. ``$validate`` reports each as a ``warning`` issue
        (``code-invalid``). None to leave it to another plugin (none answering: these
        bindings are not checked).
    """


@hookspec
def register_code_systems(hub: Hub) -> list[dict[str, Any]] | None:
    """Called once while the hub is built.

    :param hub: the hub being built.
    :returns: CodeSystem and ValueSet resources (as dicts) the plugin provides; they are stored
        idempotently (a conditional update by canonical ``url``, a new version only on change).
    """


# -- CLI -------------------------------------------------------------------------------------


@hookspec(firstresult=True)
def log_trust(hub: Hub) -> Any:
    """Called by ``fhirhub replay`` before it copies the version log into the projections
    (``firstresult``).

    :param hub: the hub being replayed.
    :returns: a :class:`fhirhub.sdk.LogTrust` (trusted public keys, the signed heads anchored
        outside the database, the most an unsigned entry may age) or None. With one, the
        replay also refuses a log whose signatures or anchored heads do not verify, not only
        one whose hash chain is broken. The ``integrity`` plugin answers it.
    """


@hookspec
def register_commands(cli: Any) -> None:
    """Called when the ``fhirhub`` command line starts.

    :param cli: the ``typer.Typer`` application; add subcommands to it.
    :returns: nothing.
    """


# -- background work -------------------------------------------------------------------------


@hookspec
def register_tasks(hub: Hub) -> dict[str, Any] | None:
    """Called once while the hub is built (in API processes and in Celery workers alike).

    :param hub: the hub being built.
    :returns: ``{name: function}`` of background tasks. They run in-process by default (a
        thread pool) and on Celery workers when ``FHIRHUB_BROKER`` names a Redis or RabbitMQ
        URL; schedule them with ``hub.tasks.submit(name, *args)``, which returns a handle whose
        ``result(timeout)`` waits. Arguments and results must be JSON-serialisable.
    """


# -- UI --------------------------------------------------------------------------------------


@hookspec
def ui_pages(hub: Hub) -> list[dict[str, Any]] | None:
    """Called on each UI shell page render, to build the navigation.

    :param hub: the running hub.
    :returns: pages ``{"path", "title", "icon"?, "order"?}``; ``path`` is a local route of the
        plugin (usually under its ``/plugins/<name>`` prefix).
    """


@hookspec
def ui_patient_panels(hub: Hub) -> list[dict[str, Any]] | None:
    """Called on each patient chart render.

    :param hub: the running hub.
    :returns: panels ``{"id", "title", "order"?, "resource_types" or "url", "params"?,
        "renderer"?, "form"?}``; the shell renders them from the public FHIR API for the open
        patient (``form``: one of the shell's entry forms under the panel, ``add-condition``).
    """


@hookspec
def ui_topbar_items(hub: Hub) -> list[dict[str, Any]] | None:
    """Called on each UI shell page render, to fill the top bar (a notification bell, a
    status light) on every shell page.

    :param hub: the running hub.
    :returns: items ``{"id", "title", "script", "icon"?, "order"?}``. The shell renders, for
        each, a button (``icon``, ``title`` as its label, a hidden ``.badge``) and a hidden
        dropdown panel inside ``<div id="topbar-<id>">``, opens and closes the panel, and
        loads ``script`` (a local path, usually under ``/plugins/<name>/``) as a module; the
        script fills the badge and the panel through the public API. A malformed item is
        logged and left out.
    """


@hookspec
def ai_tools(hub: Hub) -> list[dict[str, Any]] | None:
    """Called when the AI assistant (the ``ai`` plugin) offers its tools to a model, to add a
    plugin's own (a score, a terminology lookup, a contraindication check).

    :param hub: the running hub.
    :returns: tools ``{"name", "description", "parameters", "run"}``: ``parameters`` a JSON
        Schema object of the arguments; ``run(arguments, patient)`` is called with the
        arguments the model sent and the conversation's patient id (or None), *as the caller*
        (use the SDK's ``read``/``search``), and returns a JSON object, which may list the
        resources it drew on under ``"references"`` (they become the answer's sources). Raise
        ``FhirError`` to refuse; the model is told why.
    """


# -- imaging --------------------------------------------------------------------------------


@hookspec(firstresult=True)
def dicom_archive(hub: Hub) -> Any:
    """Asked by :func:`fhirhub.sdk.dicom_instances` and its siblings for the hub's DICOM
    archive (``firstresult``; the built-in DICOM adapter answers).

    :param hub: the hub (a Celery worker's too: no listener needs to run).
    :returns: an object implementing :class:`fhirhub.sdk.DicomArchiveAccess`, which applies the
        current caller's tenant and patient visibility itself; ``None`` when this plugin keeps
        no archive.
    """
