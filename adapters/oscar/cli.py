"""``fhirhub oscar sync [--full] [--since TIMESTAMP]`` and ``fhirhub oscar status``."""

from __future__ import annotations

import json
from typing import Any

import typer

from fhirhub.sdk import command_hub


def add_commands(cli: Any) -> None:
    group = typer.Typer(
        help="OSCAR EMR adapter: sync a clinic's records, show where it stands",
        no_args_is_help=True,
    )

    @group.command("sync")
    def sync(
        full: bool = typer.Option(
            False, "--full", help="Read every record again (cursors from the start)"
        ),
        since: str | None = typer.Option(
            None,
            "--since",
            help="Only records updated at or after this local time (YYYY-MM-DD[ HH:MM:SS])",
        ),
        db: str | None = typer.Option(
            None, "--db", help="The hub's database (default: FHIRHUB_DB)"
        ),
    ) -> None:
        """Sync now: read what changed in OSCAR since the cursors and write it as FHIR."""
        from fhirhub.adapters.oscar.runtime import runtime

        with command_hub(db=db) as hub:
            current = runtime(hub)
            if current is None:
                typer.echo(
                    "OSCAR is not configured: set [plugin.oscar] database, or url with credentials",
                    err=True,
                )
                raise typer.Exit(2)
            report = current.sync(full=full, since=since)
            for name, stream in report.streams.items():
                note = f"  ERROR {stream.error}" if stream.error else ""
                typer.echo(
                    f"{name:20} {stream.records:7} records {stream.resources:7} written {stream.dead_letters:5} dead letters{note}"
                )
            for warning in report.warnings[:20]:
                typer.echo(f"warning: {warning}")
            typer.echo(report.summary())
            if report.error:
                typer.echo(f"error: {report.error}", err=True)
            raise typer.Exit(0 if report.ok else 1)

    @group.command("status")
    def status(
        db: str | None = typer.Option(
            None, "--db", help="The hub's database (default: FHIRHUB_DB)"
        ),
        as_json: bool = typer.Option(False, "--json", help="Machine-readable output"),
    ) -> None:
        """Cursors per stream, record counts, the last runs and errors, open dead letters."""
        from fhirhub.adapters.oscar.runtime import runtime

        with command_hub(db=db) as hub:
            current = runtime(hub)
            if current is None:
                typer.echo("OSCAR is not configured")
                raise typer.Exit(0)
            info = current.status()
        if as_json:
            typer.echo(json.dumps(info, default=str, indent=2))
            return
        typer.echo(f"OSCAR {info['instance']} ({info['source']}), tenant {info['tenant'] or '-'}")
        typer.echo("stream               cursor                              records  synced at")
        for name, row in sorted(info["cursors"].items()):
            position = f"{row['updated']} #{row['key']}".strip()
            typer.echo(f"{name:20} {position:35} {row['records']:8}  {row['synced_at']}")
        for run in info["runs"][:5]:
            typer.echo(
                f"run {run['id']}: {run['mode']} {run['status']} {run['started']} "
                f"records={run['records']} written={run['resources']} dead={run['dead_letters']}"
                + (f" error={run['error']}" if run["error"] else "")
            )
        typer.echo(f"open dead letters: {info['dead_letter_count']}")
        for letter in info["dead_letters"][:20]:
            typer.echo(
                f"  {letter['stream']} {letter['key']}: {letter['reason']} (Task/{letter['task_id']})"
            )
        pending = [w for w in info["writeback"] if w["status"] != "sent"]
        typer.echo(f"write-backs not sent: {len(pending)}")
        for item in pending[:20]:
            typer.echo(
                f"  {item['resource_type']}/{item['resource_id']} {item['status']} attempts={item['attempts']} {item['last_error'] or ''}"
            )
        if info["last_error"]:
            typer.echo(f"last error: {info['last_error']}")

    cli.add_typer(group, name="oscar")
