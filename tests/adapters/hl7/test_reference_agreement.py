"""Agreement with the reference converter on the 139 sample messages (skipped without
../shared). Every message is either converted or rejected with a precise reason, and for
converted messages most facts of the reference output come out the same."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import pytest

from fhirhub.adapters.hl7.convert import ConversionError, convert
from fhirhub.adapters.hl7.parsing import Hl7ParseError, parse
from fhirhub.fhir_store.validation import resource_issues
from tests.adapters.hl7.reference import facts

SHARED = Path(__file__).resolve().parents[3].parent / "shared" / "data" / "hl7v2"
pytestmark = pytest.mark.skipif(not SHARED.is_dir(), reason="../shared/data/hl7v2 is absent")


def agreement() -> dict[str, list[int]]:
    """message type -> [messages, facts compared, facts agreeing, rejected]."""
    table: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0, 0])
    expected = {p.name.removesuffix("-expected.json"): p for p in SHARED.glob("expected/*/*.json")}
    for path in sorted((SHARED / "messages").glob("*.hl7")):
        message = parse(path.read_bytes())
        row = table[message.message_type]
        row[0] += 1
        try:
            ours = facts(convert(message))
        except ConversionError:
            row[3] += 1
            continue
        reference = expected.get(path.stem)
        if reference is None:
            continue
        theirs = facts(json.loads(reference.read_text()))
        row[1] += len(theirs)
        row[2] += len(theirs & ours)
    return dict(table)


def test_every_message_is_accepted_or_rejected_with_a_reason() -> None:
    for path in sorted((SHARED / "messages").glob("*.hl7")):
        try:
            convert(parse(path.read_bytes()))
        except (ConversionError, Hl7ParseError) as error:
            assert str(error) and getattr(error, "segment", None), path.name


def test_all_sample_output_is_valid_fhir_r4() -> None:
    for path in sorted((SHARED / "messages").glob("*.hl7")):
        try:
            bundle = convert(parse(path.read_bytes()))
        except ConversionError:
            continue
        for entry in bundle["entry"]:
            assert resource_issues(entry["resource"]) == [], (path.name, entry["resource"])


def test_facts_agree_with_the_reference_converter() -> None:
    table = agreement()
    compared = sum(row[1] for row in table.values())
    agreeing = sum(row[2] for row in table.values())
    assert compared > 1000
    assert agreeing / compared >= 0.8, f"{agreeing}/{compared}"


if __name__ == "__main__":  # prints the table for docs/hl7.md
    rows = agreement()
    print("| Message type | Messages | Rejected | Facts compared | Facts agreeing | % |")
    print("|---|---:|---:|---:|---:|---:|")
    for kind, (n, compared, agreeing, rejected) in sorted(rows.items()):
        pct = f"{100 * agreeing / compared:.0f}" if compared else "-"
        print(f"| {kind} | {n} | {rejected} | {compared} | {agreeing} | {pct} |")
    total = [sum(r[i] for r in rows.values()) for i in range(4)]
    print(
        f"| **all** | {total[0]} | {total[3]} | {total[1]} | {total[2]} | "
        f"{100 * total[2] / total[1]:.0f} |"
    )


def test_every_sample_is_acknowledged_aa_or_rejected_with_err(
    sqlite_url: str, tmp_path: Path
) -> None:
    """All 139 messages through the store: AA, or AR/AE with an ERR segment and a dead letter."""
    from fhirhub.adapters.hl7.processing import handle
    from fhirhub.core.hub import build_hub
    from tests.conftest import make_settings

    hub = build_hub(make_settings(sqlite_url, tmp_path))
    try:
        codes = []
        for path in sorted((SHARED / "messages").glob("*.hl7")):
            outcome = handle(hub, path.read_bytes())
            codes.append(outcome.code)
            if outcome.code != "AA":
                assert outcome.dead_letter, path.name
                assert outcome.message is not None
                if outcome.message.msh.get(16) != "NE":  # NE: the sender wants no ACK
                    assert b"\rERR|" in outcome.ack, path.name
        assert codes.count("AA") == 108 and codes.count("AR") == 31
    finally:
        hub.store.engine.dispose()
