"""The HL7 v2 adapter as a built-in plugin: MLLP listener, ``POST /hl7/v2`` (also at
``/plugins/hl7/v2``), CLI commands, and the outbound feed (a consumer of the version log)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fhirhub.adapters.hl7.settings import hl7_settings
from fhirhub.sdk import Consumer, HubLocal, command_hub, hookimpl

if TYPE_CHECKING:
    from fhirhub.adapters.hl7.mllp_server import MllpServer

log = logging.getLogger("fhirhub.hl7")
__version__ = "0.1.0"


_SERVER: HubLocal[MllpServer] = HubLocal("hl7.mllp")


@hookimpl
def startup(hub: Any) -> None:
    from fhirhub.adapters.hl7.convert_pool import configured_processes
    from fhirhub.adapters.hl7.mllp_server import MllpServer

    port = hl7_settings(hub).listener_port
    if port is None or not hub.settings.listeners:
        log.info("MLLP listener off (FHIRHUB_HL7_PORT=off or FHIRHUB_LISTENERS=off)")
        return
    server = MllpServer(
        hub, hub.settings.host, port, convert_processes=configured_processes(hub)
    ).start()
    _SERVER.set(hub, server)


@hookimpl
def shutdown(hub: Any) -> None:
    server = _SERVER.pop(hub)
    if server is not None:
        server.stop()


@hookimpl
def register_consumers(hub: Any) -> list[Consumer]:
    """Outbound feed (ADT^A04/A08, ORU^R01) when a destination is configured. Named ``hl7``
    (the cursor of the feed's earlier ``resource_committed`` form), reading only the types
    that make messages: without a destination it still follows the log, so a destination
    configured later starts from then, not from years of history."""
    from fhirhub.adapters.hl7.outbound import TRIGGER_TYPES, deliver_versions

    return [
        Consumer(
            "hl7",
            lambda versions: deliver_versions(hub, versions),
            types=TRIGGER_TYPES,
            batch_size=100,
        )
    ]


@hookimpl
def register_routes(hub: Any) -> Any:
    """``POST /plugins/hl7/v2`` and its alias ``POST /hl7/v2``."""
    from fhirhub.adapters.hl7.routes import routers

    return routers(hub)


@hookimpl
def register_commands(cli: Any) -> None:
    import typer

    group = typer.Typer(help="HL7 v2 adapter: load files, inspect and replay dead letters")

    @group.command("load")
    def load(files: list[Path], db: str | None = typer.Option(None, "--db")) -> None:
        """Process HL7 v2 files (one message or a batch per file)."""
        from fhirhub.adapters.hl7.processing import process_batch

        failed = 0
        with command_hub(db=db) as hub:
            for path in files:
                for outcome in process_batch(hub, path.read_bytes()):
                    control = outcome.message.control_id if outcome.message else "?"
                    note = " (duplicate)" if outcome.duplicate else ""
                    line = f"{path}: {outcome.code} {control}{note} {outcome.error or ''}"
                    typer.echo(line.rstrip())
                    failed += outcome.code != "AA"
        raise typer.Exit(1 if failed else 0)

    @group.command("dead-letters")
    def dead_letters(
        db: str | None = typer.Option(None, "--db"),
        all_: bool = typer.Option(False, "--all", help="Include resolved ones"),
    ) -> None:
        """List messages that were rejected or failed, with the reason."""
        from fhirhub.adapters.hl7.dead_letters import list_dead_letters

        with command_hub(db=db) as hub:
            tasks = list_dead_letters(hub, include_resolved=all_)
        for task in tasks:
            typer.echo(
                f"{task['id']}\t{task['status']}\t{task.get('businessStatus', {}).get('text', '')}\t"
                f"{task.get('description', '')}\t{task.get('statusReason', {}).get('text', '')}"
            )

    @group.command("replay")
    def replay(task_id: str, db: str | None = typer.Option(None, "--db")) -> None:
        """Re-process one dead letter (after a fix); it is marked completed on success."""
        from fhirhub.adapters.hl7.dead_letters import load_dead_letter, mark_resolved
        from fhirhub.adapters.hl7.processing import handle

        with command_hub(db=db) as hub:
            task, raw = load_dead_letter(hub, task_id)
            outcome = handle(hub, raw)
            if outcome.code == "AA":
                mark_resolved(hub, task, "replayed successfully")
        typer.echo(f"{task_id}: {outcome.code} {outcome.error or ''}".rstrip())
        raise typer.Exit(0 if outcome.code == "AA" else 1)

    cli.add_typer(group, name="hl7")
