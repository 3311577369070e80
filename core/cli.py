"""The ``fhirhub`` command line: serve, load, replay, migrate, version (plus plugin commands)."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Annotated, Any

import typer

from fhirhub import FHIR_VERSION, __version__

app = typer.Typer(help="fhirhub: a plugin-based FHIR R4 interoperability hub", no_args_is_help=True)

DbOption = Annotated[
    str | None,
    typer.Option(
        "--db", help="Database URL (default: FHIRHUB_DB or SQLite under FHIRHUB_DATA_DIR)"
    ),
]


def _settings(db: str | None = None, **overrides: Any) -> Any:
    from fhirhub.core.settings import load_settings

    return load_settings(db=db, **overrides)


@app.command()
def version() -> None:
    """Print the fhirhub and FHIR versions."""
    typer.echo(f"fhirhub {__version__} (FHIR {FHIR_VERSION})")


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Address to bind")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port")] = 8080,
    db: DbOption = None,
    workers: Annotated[int, typer.Option(help="Worker processes (PostgreSQL only)")] = 1,
    demo: Annotated[
        bool, typer.Option(help="Load the shipped demo patients if the store is empty")
    ] = False,
    ssl_certfile: Annotated[
        str | None, typer.Option(help="TLS certificate chain (PEM): serve https (docs/security.md)")
    ] = None,
    ssl_keyfile: Annotated[str | None, typer.Option(help="TLS private key (PEM)")] = None,
    forwarded_allow_ips: Annotated[
        str | None,
        typer.Option(
            help="Reverse proxies whose X-Forwarded-For/-Proto are trusted "
            "(default: $FORWARDED_ALLOW_IPS, else 127.0.0.1)"
        ),
    ] = None,
) -> None:
    """Serve the FHIR API (and the UI shell) with uvicorn."""
    import uvicorn

    # TLS by uvicorn itself, or behind a proxy that terminates it (docs/security.md).
    network: dict[str, Any] = {"ssl_certfile": ssl_certfile, "ssl_keyfile": ssl_keyfile}
    if forwarded_allow_ips is not None:
        network["forwarded_allow_ips"] = forwarded_allow_ips

    if db:
        os.environ["FHIRHUB_DB"] = db
    settings = _settings(db)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    _check_auth(settings.auth, host)
    # Requests whose headers dribble in are cut off (core/http/server.py).
    from fhirhub.core.http.server import uvicorn_options

    network.update(uvicorn_options(settings.http_header_timeout))
    logging.getLogger("alembic").setLevel(logging.WARNING)
    # httpx logs every request at INFO: one line per rest-hook notification, HL7 outbound
    # message or OSCAR call (thousands a minute under load, each taking the log handler's lock).
    # Failures are logged by the callers with their context.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    if demo:
        from fhirhub.core.demo import load_demo_data
        from fhirhub.core.hub import build_hub

        hub = build_hub(settings)
        loaded = load_demo_data(hub)
        typer.echo(
            f"Demo data: {loaded} resources loaded" if loaded else "Demo data already present"
        )
        hub.store.engine.dispose()
    if workers > 1:
        if settings.database_url.startswith("sqlite"):
            typer.echo(
                "Several workers need PostgreSQL (FHIRHUB_DB=postgresql+psycopg://...)", err=True
            )
            raise typer.Exit(2)
        uvicorn.run(
            "fhirhub.core.http.app:app_factory",
            factory=True,
            host=host,
            port=port,
            workers=workers,
            log_level="info",
            **network,
        )
        return
    from fhirhub.core.http.app import create_app
    from fhirhub.core.worker_process import wanted

    app = create_app(settings, freeze_heap=True, worker_process=wanted(settings))
    uvicorn.run(app, host=host, port=port, log_level="info", **network)


def _check_auth(auth: str, host: str) -> None:
    """``FHIRHUB_AUTH=off`` serves every caller as the system: loopback only, and loudly."""
    import ipaddress

    if auth.strip().lower() not in ("off", "false", "0", "no"):
        return
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = host == "localhost"
    if not loopback:
        typer.echo(
            f"Refusing to serve on {host} with FHIRHUB_AUTH=off: without authentication anyone "
            "who can reach the port reads and writes everything. Bind to 127.0.0.1, or turn "
            "authentication on (unset FHIRHUB_AUTH).",
            err=True,
        )
        raise typer.Exit(2)
    logging.getLogger("fhirhub").warning(
        "\n%s\n  AUTHENTICATION IS OFF (FHIRHUB_AUTH=off): every request runs with full access.\n"
        "  For local development only.\n%s",
        "!" * 78,
        "!" * 78,
    )


@app.command()
def load(
    files: Annotated[list[Path], typer.Argument(help="Bundles (.json) or NDJSON files (.ndjson)")],
    db: DbOption = None,
    progress: Annotated[bool, typer.Option(help="Show a progress bar")] = True,
) -> None:
    """Load Bundles and NDJSON files into the store (in-process, one transaction per Bundle)."""
    from fhirhub.core.hub import build_hub
    from fhirhub.core.loading import load_files

    hub = build_hub(_settings(db))
    try:
        total = load_files(hub, files, progress=progress)
    except Exception as exc:
        typer.echo(f"Load failed: {exc}", err=True)
        raise typer.Exit(1) from exc
    typer.echo(f"Loaded {total} resources from {len(files)} file(s)")


@app.command()
def replay(db: DbOption = None) -> None:
    """Rebuild current state, search indexes and the plugins' projections from the version
    log (projection consumers are reset and re-fed from the log by the next ``serve``)."""
    from fhirhub.core.dispatcher import reset_consumers
    from fhirhub.core.hub import build_hub
    from fhirhub.fhir_store.replay import TamperedLog
    from fhirhub.fhir_store.replay import replay as run_replay

    hub = build_hub(_settings(db, listeners=False))
    try:
        count = run_replay(hub.store, trust=hub.hook.log_trust(hub=hub))
        projections = reset_consumers(hub)
    except TamperedLog as refused:
        typer.echo(refused.message, err=True)
        raise typer.Exit(1) from None
    finally:
        hub.close()
    typer.echo(f"Replayed the version log: {count} current resources re-indexed")
    if projections:
        typer.echo(f"Projections reset, rebuilt from the log when the hub serves: {projections}")


@app.command()
def migrate(db: DbOption = None) -> None:
    """Upgrade the database schema to the latest migration."""
    from fhirhub.fhir_store.database import make_engine
    from fhirhub.fhir_store.migrations import current_revision, upgrade

    engine = make_engine(_settings(db).database_url)
    upgrade(engine)
    typer.echo(f"Schema at revision {current_revision(engine)}")


@app.command("plugins")
def plugins() -> None:
    """List plugins: name, version, source, enabled or why not, hooks, declared needs."""
    from fhirhub.core.plugins_cli import list_plugins

    list_plugins()


def main() -> None:
    from fhirhub.core.plugins_cli import plugin_app

    app.add_typer(plugin_app, name="plugin")
    from fhirhub.core.plugins import register_cli_commands

    register_cli_commands(app)
    app(prog_name="fhirhub")


if __name__ == "__main__":
    main()
