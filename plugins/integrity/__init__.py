"""Tamper evidence for the version log (built-in plugin ``integrity``).

The store chains every log row to the one before it (see docs/architecture.md); this plugin
adds what needs a key and an operator:

* ``startup``/``shutdown`` — a background thread signs the chain head with the server's Ed25519
  key every ``FHIRHUB_CHAIN_SIGN_INTERVAL`` seconds (default 60) when it moved, and once more at
  shutdown (keys: :mod:`fhirhub.plugins.integrity.keys`); every signed head is also appended to
  an anchor file outside the database and optionally POSTed to a witness
  (:mod:`fhirhub.plugins.integrity.anchor`);
* ``$verify-chain`` — a system-level operation (role ``super_admin``) that checks the whole
  chain, every signature, every anchored head, the age of the unsigned tail and the projections
  (current rows, search index rows) and answers a ``Parameters`` naming the first bad entry;
* ``$sign-chain-head`` — signs the head now (role ``super_admin``);
* ``fhirhub verify`` (exit code 0 when intact, 1 naming the first bad entry) and
  ``fhirhub sign-head``;
* ``log_trust`` — what ``fhirhub replay`` verifies the log against before copying it;
* the ``integrity`` health check fails once a read refused a current row that does not match
  its log entry (the database was edited outside the hub), ``chain-anchor`` while the anchor
  file or the witness does not take signed heads.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import typer

from fhirhub.plugins.integrity.anchor import AnchorFile, Witness
from fhirhub.plugins.integrity.keys import (
    anchor_file,
    load_signing_key,
    max_unsigned_age,
    sign_interval,
    trusted_keys,
    witness_url,
)
from fhirhub.plugins.integrity.signer import HeadSigner
from fhirhub.sdk import (
    ChainReport,
    Hub,
    HubLocal,
    LogTrust,
    Operation,
    OperationCall,
    ProjectionReport,
    chain_key_id,
    command_hub,
    current_access,
    hookimpl,
    integrity_alarms,
    verify_log,
    verify_projections,
)

__version__ = "1.0.0"
PLUGIN_NAME = "integrity"
MANIFEST: dict[str, list[str]] = {"resource_types": [], "scopes": []}

_SIGNER: HubLocal[HeadSigner] = HubLocal("integrity.signer")


def _signer(hub: Hub) -> HeadSigner:
    """The hub's signer (made on first use, so operations work without the lifespan too)."""

    def create() -> HeadSigner:
        return _new_signer(hub)

    return _SIGNER.setdefault(hub, create)


def _new_signer(hub: Hub) -> HeadSigner:
    key = load_signing_key(hub.settings)
    assert key is not None
    path = anchor_file(hub.settings)
    url = witness_url(hub.settings)
    return HeadSigner(
        hub,
        key,
        sign_interval(hub.settings),
        anchor=AnchorFile(path) if path is not None else None,
        witness=Witness(url) if url else None,
    )


def trust(hub: Hub) -> LogTrust:
    """The keys, the anchored heads and the unsigned-age limit a verification uses."""
    path = anchor_file(hub.settings)
    return LogTrust(
        keys=trusted_keys(hub.settings),
        anchored=AnchorFile(path).read() if path is not None else (),
        max_unsigned_age=max_unsigned_age(hub.settings),
    )


@dataclass
class Verification:
    """The log (chain, signatures, anchors) and the projections, checked together."""

    chain: ChainReport
    projections: ProjectionReport

    @property
    def intact(self) -> bool:
        return self.chain.intact and self.projections.intact

    @property
    def problems(self) -> list[str]:
        return [p.describe() for p in self.chain.problems] + [
            p.describe() for p in self.projections.problems
        ]


def verify_all(hub: Hub) -> Verification:
    return Verification(verify_log(hub, trust=trust(hub)), verify_projections(hub))


@hookimpl
def log_trust(hub: Hub) -> LogTrust:
    return trust(hub)


@hookimpl
def health_checks(hub: Hub) -> list[tuple[str, Any]]:
    def projections_served_as_logged() -> bool:
        return not integrity_alarms(hub)

    def anchored() -> bool:
        signer = _SIGNER.get(hub)
        if signer is None:
            return True
        witness_ok = signer.witness is None or signer.witness.last_error is None
        return signer.anchor_error is None and witness_ok

    return [("integrity", projections_served_as_logged), ("chain-anchor", anchored)]


@hookimpl
def startup(hub: Hub) -> None:
    _signer(hub).start()


@hookimpl
def shutdown(hub: Hub) -> None:
    signer = _SIGNER.pop(hub)
    if signer is not None:
        signer.stop()


# -- operations --------------------------------------------------------------------------------


def report_parameters(
    report: ChainReport, projections: ProjectionReport | None = None
) -> dict[str, Any]:
    """A verification report as a FHIR ``Parameters`` resource."""
    intact = report.intact and (projections is None or projections.intact)
    summary = report.summary() + ("" if projections is None else f"; {projections.summary()}")
    parameter: list[dict[str, Any]] = [
        {"name": "intact", "valueBoolean": intact},
        {"name": "summary", "valueString": summary},
        {"name": "entries", "valueInteger": report.entries},
        {"name": "signatures", "valueInteger": report.signatures},
        {"name": "unsignedEntries", "valueInteger": report.unsigned_entries},
        {"name": "anchoredHeads", "valueInteger": report.anchored},
    ]
    if report.head_seq is not None:
        parameter.append({"name": "headSeq", "valueInteger": report.head_seq})
    if report.head_hash is not None:
        parameter.append({"name": "headHash", "valueString": report.head_hash.hex()})
    if report.last_signed_seq is not None:
        parameter.append({"name": "lastSignedSeq", "valueInteger": report.last_signed_seq})
    for problem in report.problems:
        part: list[dict[str, Any]] = [
            {"name": "kind", "valueCode": problem.kind},
            {"name": "seq", "valueInteger": problem.seq},
        ]
        if problem.reference:
            part.append({"name": "reference", "valueString": problem.reference})
        part.append({"name": "detail", "valueString": problem.describe()})
        parameter.append({"name": "problem", "part": part})
    if projections is not None:
        parameter.append({"name": "projectionsIntact", "valueBoolean": projections.intact})
        for found in projections.problems:
            parameter.append(
                {
                    "name": "problem",
                    "part": [
                        {"name": "kind", "valueCode": found.kind},
                        {"name": "reference", "valueString": found.reference},
                        {"name": "detail", "valueString": found.describe()},
                    ],
                }
            )
    return {"resourceType": "Parameters", "parameter": parameter}


def _verify(call: OperationCall) -> dict[str, Any]:
    current_access().require_role("super_admin")
    checked = verify_all(call.hub)
    return report_parameters(checked.chain, checked.projections)


def _sign(call: OperationCall) -> dict[str, Any]:
    current_access().require_role("super_admin")
    signed = _signer(call.hub).sign_now()
    parameter: list[dict[str, Any]] = [{"name": "signed", "valueBoolean": signed is not None}]
    if signed is not None:
        parameter += [
            {"name": "seq", "valueInteger": signed.seq},
            {"name": "headHash", "valueString": signed.head_hash.hex()},
            {"name": "keyId", "valueString": signed.key_id},
        ]
    return {"resourceType": "Parameters", "parameter": parameter}


@hookimpl
def register_operations(hub: Hub) -> list[Operation]:
    return [
        Operation(
            "verify-chain",
            _verify,
            system=True,
            description=(
                "Check the version log's hash chain and signed heads; names the first altered, "
                "deleted or reordered entry (role super_admin)"
            ),
            parameters=(
                {"name": "intact", "use": "out", "min": 1, "max": "1", "type": "boolean"},
                {"name": "summary", "use": "out", "min": 1, "max": "1", "type": "string"},
                {"name": "entries", "use": "out", "min": 1, "max": "1", "type": "integer"},
                {"name": "signatures", "use": "out", "min": 1, "max": "1", "type": "integer"},
                {"name": "problem", "use": "out", "min": 0, "max": "*"},
            ),
        ),
        Operation(
            "sign-chain-head",
            _sign,
            system=True,
            affects_state=True,
            description="Sign the version log's chain head now (role super_admin)",
        ),
    ]


# -- command line ------------------------------------------------------------------------------


@hookimpl
def register_commands(cli: typer.Typer) -> None:
    @cli.command("verify")
    def verify(
        db: str | None = typer.Option(None, "--db", help="Database URL (default: FHIRHUB_DB)"),
    ) -> None:
        """Check the version log's hash chain and signed heads (exit 1 naming the first bad
        entry)."""
        with command_hub(db=db) as hub:
            checked = verify_all(hub)
        report = checked.chain
        typer.echo(report.summary())
        typer.echo(checked.projections.summary())
        if report.anchored:
            typer.echo(f"{report.anchored} heads anchored outside the database compared")
        if report.unsigned_entries and report.intact:
            typer.echo(f"{report.unsigned_entries} entries after the last signed head")
        problems = checked.problems
        if not problems:
            typer.echo("intact")
            raise typer.Exit(0)
        typer.echo(f"TAMPERED. First bad entry: {problems[0]}")
        for problem in problems[1:]:
            typer.echo(f"  also: {problem}")
        if report.truncated or checked.projections.truncated:
            typer.echo("  (more problems not listed)")
        raise typer.Exit(1)

    @cli.command("sign-head")
    def sign_head_command(
        db: str | None = typer.Option(None, "--db", help="Database URL (default: FHIRHUB_DB)"),
        force: bool = typer.Option(False, help="Sign again even if the head is signed"),
    ) -> None:
        """Sign the version log's chain head now with the server's key."""
        with command_hub(db=db) as hub:
            signer = _new_signer(hub)
            signed = signer.sign_now(force=force)
        if signed is None:
            typer.echo(
                "Nothing to sign: the log is empty or its head is signed "
                f"(key {chain_key_id(signer.key.verify_key)})"
            )
            return
        typer.echo(f"Signed the head at seq {signed.seq} with key {signed.key_id}")
