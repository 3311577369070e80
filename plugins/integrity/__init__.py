"""Tamper evidence for the version log (built-in plugin ``integrity``).

The store chains every log row to the one before it (see docs/architecture.md); this plugin
adds what needs a key and an operator:

* ``startup``/``shutdown`` — a background thread signs the chain head with the server's Ed25519
  key every ``FHIRHUB_CHAIN_SIGN_INTERVAL`` seconds (default 60) when it moved, and once more at
  shutdown (keys: :mod:`fhirhub.plugins.integrity.keys`);
* ``$verify-chain`` — a system-level operation (role ``super_admin``) that checks the whole
  chain and every signature and answers a ``Parameters`` naming the first bad entry;
* ``$sign-chain-head`` — signs the head now (role ``super_admin``);
* ``fhirhub verify`` (exit code 0 when intact, 1 naming the first bad entry) and
  ``fhirhub sign-head``.
"""

from __future__ import annotations

from typing import Any

import typer

from fhirhub.plugins.integrity.keys import load_signing_key, sign_interval, trusted_keys
from fhirhub.plugins.integrity.signer import HeadSigner
from fhirhub.sdk import (
    ChainReport,
    Hub,
    HubLocal,
    Operation,
    OperationCall,
    chain_key_id,
    command_hub,
    current_access,
    hookimpl,
    sign_log_head,
    verify_log,
)

__version__ = "1.0.0"
PLUGIN_NAME = "integrity"
MANIFEST: dict[str, list[str]] = {"resource_types": [], "scopes": []}

_SIGNER: HubLocal[HeadSigner] = HubLocal("integrity.signer")


def _signer(hub: Hub) -> HeadSigner:
    """The hub's signer (made on first use, so operations work without the lifespan too)."""

    def create() -> HeadSigner:
        key = load_signing_key(hub.settings)
        assert key is not None
        return HeadSigner(hub, key, sign_interval(hub.settings))

    return _SIGNER.setdefault(hub, create)


@hookimpl
def startup(hub: Hub) -> None:
    _signer(hub).start()


@hookimpl
def shutdown(hub: Hub) -> None:
    signer = _SIGNER.pop(hub)
    if signer is not None:
        signer.stop()


# -- operations --------------------------------------------------------------------------------


def report_parameters(report: ChainReport) -> dict[str, Any]:
    """A verification report as a FHIR ``Parameters`` resource."""
    parameter: list[dict[str, Any]] = [
        {"name": "intact", "valueBoolean": report.intact},
        {"name": "summary", "valueString": report.summary()},
        {"name": "entries", "valueInteger": report.entries},
        {"name": "signatures", "valueInteger": report.signatures},
        {"name": "unsignedEntries", "valueInteger": report.unsigned_entries},
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
    return {"resourceType": "Parameters", "parameter": parameter}


def _verify(call: OperationCall) -> dict[str, Any]:
    current_access().require_role("super_admin")
    report = verify_log(call.hub, trusted_keys(call.hub.settings))
    return report_parameters(report)


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
            report = verify_log(hub, trusted_keys(hub.settings))
        typer.echo(report.summary())
        if report.unsigned_entries and report.intact:
            typer.echo(f"{report.unsigned_entries} entries after the last signed head")
        first = report.first_problem
        if first is None:
            raise typer.Exit(0)
        typer.echo(f"First bad entry: {first.describe()}")
        for problem in report.problems[1:]:
            typer.echo(f"  also: {problem.describe()}")
        if report.truncated:
            typer.echo("  (more problems not listed)")
        raise typer.Exit(1)

    @cli.command("sign-head")
    def sign_head_command(
        db: str | None = typer.Option(None, "--db", help="Database URL (default: FHIRHUB_DB)"),
        force: bool = typer.Option(False, help="Sign again even if the head is signed"),
    ) -> None:
        """Sign the version log's chain head now with the server's key."""
        with command_hub(db=db) as hub:
            key = load_signing_key(hub.settings)
            assert key is not None
            signed = sign_log_head(hub, key, force=force)
        if signed is None:
            typer.echo(
                "Nothing to sign: the log is empty or its head is signed "
                f"(key {chain_key_id(key.verify_key)})"
            )
            return
        typer.echo(f"Signed the head at seq {signed.seq} with key {signed.key_id}")
