"""The ASGI application: the FHIR API at ``/fhir``, plugin routes, health, errors."""

from __future__ import annotations

import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from fhirhub import __version__
from fhirhub.core.http import rest
from fhirhub.core.http.responses import error_response, fhir_response, outcome_response
from fhirhub.core.hub import Hub, build_hub
from fhirhub.core.plugins import call_hook
from fhirhub.core.settings import Settings, load_settings
from fhirhub.core.worker_process import WorkerProcess
from fhirhub.fhir_store.errors import FhirError

log = logging.getLogger("fhirhub.http")


def create_app(
    settings: Settings | None = None,
    *,
    hub: Hub | None = None,
    freeze_heap: bool = False,
    worker_process: bool = False,
) -> FastAPI:
    """Build the app; ``hub`` may be given (tests, embedding), otherwise built from settings.

    ``freeze_heap`` (the server process, not tests that build many apps in one process): once
    started, what the hub loaded (FHIR definitions, search parameters, plugins) is moved out of
    the garbage collector's reach (``gc.freeze``). Those objects live as long as the process;
    without this every full collection walked them all again, a pause of 0.2-0.3 s each, several
    times a minute under a write load.

    ``worker_process`` (``fhirhub serve``): the consumers marked ``worker_process`` run in a
    child process started with the app (:mod:`fhirhub.core.worker_process`)."""
    if hub is None:
        hub = build_hub(settings or load_settings())

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        call_hook(hub, "startup", hub=hub)
        dispatcher = hub.dispatcher
        assert dispatcher is not None
        worker: WorkerProcess | None = None
        if worker_process:
            dispatcher.placement = "api"
        dispatcher.start()
        if worker_process:
            worker = WorkerProcess(hub).start()
            hub.link = worker
        if freeze_heap:
            gc.collect()
            gc.freeze()
        try:
            yield
        finally:
            if worker is not None:
                hub.link = None
                worker.stop()
            dispatcher.stop()
            call_hook(hub, "shutdown", hub=hub)
            if hub.tasks is not None:
                hub.tasks.close()

    app = FastAPI(title="fhirhub", version=__version__, lifespan=lifespan)
    app.state.hub = hub
    # Plugin routes first: a root-mounted router's standard paths
    # (/fhir/.well-known/smart-configuration) must win over /fhir/{type}/{id}.
    _mount_plugin_routes(app, hub)
    app.include_router(rest.router, prefix="/fhir")
    _install_error_handlers(app)
    from fhirhub.core.http import hardening
    from fhirhub.core.http.access_control import AccessControl

    hardening.install_inner(app, hub)  # per-caller rate limit: runs inside authentication
    app.add_middleware(AccessControl, hub=hub)
    hardening.install_outer(app, hub)  # per-address limit, CORS, security headers

    @app.get("/healthz", include_in_schema=False)
    def healthz() -> Response:
        checks: dict[str, str] = {}
        healthy = True
        try:
            with hub.store.read() as conn:
                conn.exec_driver_sql("SELECT 1")
            checks["database"] = "ok"
        except Exception as exc:  # the point of a health check is to report, not raise
            checks["database"] = f"failing: {exc}"
            healthy = False
        for status in hub.dispatcher.status() if hub.dispatcher is not None else []:
            if status.stalled:
                checks[f"consumer:{status.name}"] = (
                    f"stalled: one delivery has run over {status.timeout_s:.0f} s"
                )
                healthy = False
        if isinstance(hub.link, WorkerProcess):
            worker = hub.link
            checks["worker-process"] = (
                "ok" if worker.ready else "starting" if worker.alive else "failing: not running"
            )
            healthy = healthy and worker.ready
        for _plugin, registered in call_hook(hub, "health_checks", hub=hub):
            for name, check in registered:
                try:
                    ok = bool(check())
                except Exception as exc:
                    ok = False
                    checks[name] = f"failing: {exc}"
                else:
                    checks[name] = "ok" if ok else "failing"
                healthy = healthy and ok
        return fhir_response(
            {"status": "ok" if healthy else "failing", "checks": checks}, 200 if healthy else 503
        )

    return app


def _mount_plugin_routes(app: FastAPI, hub: Hub) -> None:
    for plugin, routers in call_hook(hub, "register_routes", hub=hub):
        name = hub.plugins.get_name(plugin) or "plugin"
        for router in routers if isinstance(routers, list | tuple) else [routers]:
            if getattr(router, "mount_at_root", False):
                app.include_router(router)  # well-known paths (see the register_routes hook)
            else:
                app.include_router(router, prefix=f"/plugins/{name}")


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(FhirError)
    async def fhir_error(_request: Request, exc: FhirError) -> Response:
        return error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def validation_error(_request: Request, exc: RequestValidationError) -> Response:
        return outcome_response(400, "error", "invalid", f"Invalid request: {exc.errors()}")

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        if exc.status_code == 404:
            text = f"No route for {request.method} {request.url.path}"
            return outcome_response(404, "error", "not-found", text)
        if exc.status_code == 405:
            text = f"{request.method} is not allowed on {request.url.path}"
            return outcome_response(405, "error", "not-supported", text)
        return outcome_response(exc.status_code, "error", "processing", str(exc.detail))

    @app.exception_handler(Exception)
    async def unexpected(_request: Request, exc: Exception) -> Response:
        log.exception("Unhandled error")
        return outcome_response(500, "fatal", "exception", f"Internal error: {type(exc).__name__}")


def app_factory() -> Any:
    """For ``uvicorn --factory fhirhub.core.http.app:app_factory`` (several workers)."""
    return create_app(freeze_heap=True)
