"""``fhirhub dicom ...``: talk to the configured PACS and manage the local DICOM archive."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer

from fhirhub.sdk import Hub, command_hub

dicom_app = typer.Typer(
    help="DICOM: query/retrieve a remote PACS, import files", no_args_is_help=True
)

DbOption = Annotated[str | None, typer.Option("--db", help="Database URL")]


@contextmanager
def _hub(db: str | None) -> Iterator[Hub]:
    """A hub for one command, closed afterwards, its listeners off (a command must not take
    the ports of a running hub; ``retrieve --method move`` starts its own node)."""
    with command_hub(db=db) as hub:
        yield hub


def _pacs(hub, host: str | None, port: int | None, aet: str | None):  # type: ignore[no-untyped-def]
    from fhirhub.adapters.dicom.config import DicomConfig, RemoteNode

    configured = DicomConfig.from_settings(hub.settings).pacs
    if host and port and aet:
        return RemoteNode(aet, host, port)
    if configured is None:
        raise typer.BadParameter("No PACS configured: give --host, --port and --aet")
    return RemoteNode(aet or configured.aet, host or configured.host, port or configured.port)


PacsHost = Annotated[str | None, typer.Option(help="PACS host (default: [plugin.dicom] pacs)")]
PacsPort = Annotated[int | None, typer.Option(help="PACS DICOM port")]
PacsAet = Annotated[str | None, typer.Option(help="PACS AE title")]


@dicom_app.command()
def echo(
    host: PacsHost = None, port: PacsPort = None, aet: PacsAet = None, db: DbOption = None
) -> None:
    """C-ECHO the PACS."""
    from fhirhub.adapters.dicom.config import DicomConfig
    from fhirhub.adapters.dicom.scu import echo as send_echo

    with _hub(db) as hub:
        pacs, own = _pacs(hub, host, port, aet), DicomConfig.from_settings(hub.settings).aet
    ok = send_echo(pacs, calling_aet=own)
    typer.echo("ok" if ok else "failed")
    raise typer.Exit(0 if ok else 1)


@dicom_app.command()
def query(
    patient: Annotated[str | None, typer.Option(help="Patient ID")] = None,
    accession: Annotated[str | None, typer.Option(help="Accession number")] = None,
    study_date: Annotated[str | None, typer.Option(help="YYYYMMDD or a range a-b")] = None,
    study: Annotated[str | None, typer.Option(help="Study Instance UID")] = None,
    host: PacsHost = None,
    port: PacsPort = None,
    aet: PacsAet = None,
    db: DbOption = None,
) -> None:
    """Study-level C-FIND at the PACS; prints one JSON object per study."""
    from fhirhub.adapters.dicom.config import DicomConfig
    from fhirhub.adapters.dicom.scu import find_studies

    criteria = {
        k: v
        for k, v in {
            "PatientID": patient,
            "AccessionNumber": accession,
            "StudyDate": study_date,
            "StudyInstanceUID": study,
        }.items()
        if v
    }
    with _hub(db) as hub:
        pacs, own = _pacs(hub, host, port, aet), DicomConfig.from_settings(hub.settings).aet
    for match in find_studies(pacs, criteria, calling_aet=own):
        typer.echo(json.dumps(match))


@dicom_app.command()
def retrieve(
    studies: Annotated[list[str], typer.Argument(help="Study Instance UIDs")],
    method: Annotated[str, typer.Option(help="get (same association) or move")] = "get",
    host: PacsHost = None,
    port: PacsPort = None,
    aet: PacsAet = None,
    db: DbOption = None,
) -> None:
    """Retrieve studies from the PACS into fhirhub (files, catalogue, ImagingStudy).

    With ``--method move`` a listener is started on FHIRHUB_DICOM_PORT for the duration (the
    PACS must know fhirhub's AE title at that address; stop ``fhirhub serve`` first, or run
    ``$pacs-retrieve`` against the server instead)."""
    from fhirhub.adapters.dicom.archive import archive_for
    from fhirhub.adapters.dicom.config import DicomConfig, UnknownAE
    from fhirhub.adapters.dicom.scp import DicomNode
    from fhirhub.adapters.dicom.scu import retrieve as run_retrieve

    with _hub(db) as hub:
        config = DicomConfig.from_settings(hub.settings)
        archive = archive_for(hub)
        pacs = _pacs(hub, host, port, aet)
        node = None
        tenant = None  # C-GET: the default tenant
        if method == "move":
            try:  # the listener stores what the PACS sends for the tenant of its AE title
                tenant = config.tenant_of_ae(pacs.aet)
            except UnknownAE as exc:
                raise typer.BadParameter(
                    f"{exc}: the listener would refuse the PACS's C-STOREs; use --method get"
                ) from exc
            node = DicomNode(archive, config)
            node.start()
        try:
            result = run_retrieve(
                archive, pacs, studies, own_aet=config.aet, method=method, tenant=tenant
            )
        finally:
            if node is not None:
                node.stop()
    typer.echo(
        json.dumps(
            {
                "completed": result.completed,
                "failed": result.failed,
                "imagingStudies": result.imaging_studies,
            }
        )
    )


@dicom_app.command("import")
def import_files(
    paths: Annotated[list[Path], typer.Argument(help="DICOM files or folders")],
    db: DbOption = None,
) -> None:
    """Store local DICOM files as if they had been sent by C-STORE."""
    from fhirhub.adapters.dicom.archive import InstanceRejected, archive_for

    stored = rejected = 0
    with _hub(db) as hub:
        archive = archive_for(hub)
        for path in paths:
            for file in sorted(path.rglob("*")) if path.is_dir() else [path]:
                if not file.is_file():
                    continue
                try:
                    archive.store_part10(file.read_bytes(), wait=False)
                    stored += 1
                except InstanceRejected as exc:
                    rejected += 1
                    typer.echo(f"{file}: {exc}", err=True)
        archive.drain()
    typer.echo(json.dumps({"stored": stored, "rejected": rejected}))


@dicom_app.command("rebuild-index")
def rebuild_index(db: DbOption = None) -> None:
    """Re-create the C-FIND / QIDO catalogue from the stored files."""
    from fhirhub.adapters.dicom.archive import archive_for

    with _hub(db) as hub:
        indexed = archive_for(hub).rebuild_index()
    typer.echo(json.dumps({"indexed": indexed}))
