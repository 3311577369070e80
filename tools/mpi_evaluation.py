"""Evaluation set for the master patient index: real-looking people, perturbed duplicates with
known truth, and the measured precision and recall of the MPI beside a plain exact-identifier
rule, in the same run.

The people: the 100 Synthea patients of ``../shared/data/synthea`` when that folder exists,
otherwise (and always in the test suite's quick run) the committed sample
``tests/plugins/mpi/data/sample_patients.json``, 100 patients made with Faker by
``--make-sample`` (seeded; no real person). Each person arrives once from its "home" source,
then again from other sources as a perturbed duplicate (each source has its own MRN system):

* typo (one letter changed, dropped or doubled in the given or family name), nickname
  (``William`` -> ``Bill``), transliteration (``Müller`` -> ``Mueller``, accents dropped),
  missing fields (no phone, e-mail, address or birth date), swapped day and month, a new
  address and phone, a married family name;
* a third of the duplicates carry the person's national identifier (SSN), which is what the
  exact-identifier rule can find.

Hard negatives, which must never be linked automatically: twins (the same family name, birth
date, address and phone, a different given name) and a parent and child with the same name
(the same address and phone, born 20-40 years apart).

    .venv/bin/python tools/mpi_evaluation.py                # evaluate, print the figures
    .venv/bin/python tools/mpi_evaluation.py --json out.json
    .venv/bin/python tools/mpi_evaluation.py --train        # re-estimate data/model.json
    .venv/bin/python tools/mpi_evaluation.py --make-sample  # rewrite the committed sample
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
SYNTHEA = REPO.parent / "shared" / "data" / "synthea"
SAMPLE = REPO / "tests" / "plugins" / "mpi" / "data" / "sample_patients.json"
MODEL = REPO / "plugins" / "mpi" / "data" / "model.json"
SSN = "http://hl7.org/fhir/sid/us-ssn"
HOME_MRN = "urn:fhirhub:eval:home-mrn"

TRANSLITERATIONS = {"ü": "ue", "ö": "oe", "ä": "ae", "é": "e", "è": "e", "ñ": "n", "ø": "o"}


# -- people ------------------------------------------------------------------------------------


def synthea_patients(folder: Path = SYNTHEA) -> list[dict[str, Any]]:
    """The Patient of each Synthea transaction Bundle in ``folder``."""
    out = []
    for path in sorted(folder.glob("*.json")):
        bundle = json.loads(path.read_bytes())
        for entry in bundle.get("entry", []):
            if entry["resource"]["resourceType"] == "Patient":
                out.append(entry["resource"])
    return out


def faker_patients(count: int, seed: int) -> list[dict[str, Any]]:
    """``count`` invented Patients (Faker, seeded), shaped like Synthea's."""
    from faker import Faker

    fake = Faker(["en_US", "de_DE", "es_ES", "fr_FR"])
    fake.seed_instance(seed)
    rng = random.Random(seed)
    out = []
    for index in range(count):
        locale = fake[rng.choice(["en_US", "en_US", "en_US", "de_DE", "es_ES", "fr_FR"])]
        male = rng.random() < 0.5
        given = locale.first_name_male() if male else locale.first_name_female()
        birth = fake.date_of_birth(minimum_age=0, maximum_age=95)
        patient: dict[str, Any] = {
            "resourceType": "Patient",
            "id": f"p{index}",
            "identifier": [
                {"system": SSN, "value": f"999-{rng.randint(10, 99)}-{rng.randint(1000, 9999)}"}
            ],
            "name": [{"use": "official", "family": locale.last_name(), "given": [given]}],
            "gender": "male" if male else "female",
            "birthDate": birth.isoformat(),
            "telecom": [
                {
                    "system": "phone",
                    "value": f"555-{rng.randint(100, 999)}-{rng.randint(1000, 9999)}",
                    "use": "home",
                }
            ],
            "address": [
                {
                    "line": [fake.street_address()],
                    "city": fake.city(),
                    "postalCode": f"{rng.randint(1000, 99999):05d}",
                    "country": "US",
                }
            ],
        }
        if rng.random() < 0.5:
            patient["telecom"].append(
                {"system": "email", "value": f"{given}.{index}@example.org".lower()}
            )
        out.append(patient)
    return out


def base_people(prefer_synthea: bool = True) -> tuple[list[dict[str, Any]], str]:
    """The people to perturb, and where they came from."""
    if prefer_synthea and SYNTHEA.is_dir():
        return synthea_patients(), f"Synthea ({SYNTHEA})"
    return json.loads(SAMPLE.read_text()), f"committed Faker sample ({SAMPLE.name})"


# -- perturbations -----------------------------------------------------------------------------


def _clean(patient: dict[str, Any]) -> dict[str, Any]:
    """A source's copy of a person: demographics only, the person's SSN kept aside."""
    keep = ("name", "gender", "birthDate", "telecom", "address")
    copy = json.loads(json.dumps({k: patient[k] for k in keep if k in patient}))
    copy["resourceType"] = "Patient"
    copy["name"] = [n for n in copy.get("name", []) if n.get("use") != "maiden"][:1] or copy.get(
        "name", []
    )[:1]
    for name in copy.get("name", []):
        name.pop("prefix", None)
        name["given"] = [
            "".join(ch for ch in g if not ch.isdigit()) for g in name.get("given", [])[:1]
        ]
        name["family"] = "".join(ch for ch in name.get("family", "") if not ch.isdigit())
    for address in copy.get("address", []):
        address.pop("extension", None)
    return copy


def _typo(word: str, rng: random.Random) -> str:
    if len(word) < 4:
        return word + word[-1]
    i = rng.randrange(1, len(word) - 1)
    kind = rng.choice(["replace", "drop", "double", "swap"])
    if kind == "replace":
        return word[:i] + rng.choice("aeiounrst") + word[i + 1 :]
    if kind == "drop":
        return word[:i] + word[i + 1 :]
    if kind == "double":
        return word[:i] + word[i] + word[i:]
    return word[: i - 1] + word[i] + word[i - 1] + word[i + 1 :]


def _nickname(given: str) -> str | None:
    from nicknames import NickNamer

    names = sorted(NickNamer().nicknames_of(given.lower()))
    return names[0].title() if names else None


def _given(p: dict[str, Any]) -> str:
    return p["name"][0]["given"][0]


def perturb(person: dict[str, Any], kind: str, rng: random.Random) -> dict[str, Any]:
    """A duplicate of ``person`` with one perturbation ``kind`` (module docstring)."""
    p = _clean(person)
    name = p["name"][0]
    if kind == "typo-given":
        name["given"] = [_typo(_given(p), rng)]
    elif kind == "typo-family":
        name["family"] = _typo(name["family"], rng)
    elif kind == "nickname":
        nick = _nickname(_given(p))
        name["given"] = [nick] if nick else [_typo(_given(p), rng)]
    elif kind == "transliteration":
        family = name["family"]
        changed = "".join(TRANSLITERATIONS.get(ch, ch) for ch in family)
        name["family"] = changed if changed != family else family.upper()
    elif kind == "missing":
        for element in rng.sample(["telecom", "address", "gender"], 2):
            p.pop(element, None)
    elif kind == "missing-birthdate":
        p.pop("birthDate", None)
    elif kind == "swapped-day-month":
        y, m, d = p["birthDate"].split("-")
        if int(d) <= 12 and d != m:
            p["birthDate"] = f"{y}-{d}-{m}"
        else:
            p["birthDate"] = f"{y}-{m}-{int(d) % 28 + 1:02d}"  # a typo in the day instead
    elif kind == "new-address":
        p["address"] = [
            {
                "line": [f"{rng.randint(1, 999)} New Street"],
                "city": "Elsewhere",
                "postalCode": f"{rng.randint(1000, 99999):05d}",
            }
        ]
        p["telecom"] = [
            {"system": "phone", "value": f"555-{rng.randint(100, 999)}-{rng.randint(1000, 9999)}"}
        ]
    elif kind == "married":
        name["family"] = rng.choice(["Okafor", "Lindqvist", "Brennan", "Castellano", "Whitfield"])
        p.pop("address", None)
    return p


DUPLICATE_KINDS = (
    "typo-given",
    "typo-family",
    "nickname",
    "transliteration",
    "missing",
    "missing-birthdate",
    "swapped-day-month",
    "new-address",
    "married",
    "exact-copy",
)


@dataclass
class Record:
    patient: dict[str, Any]
    person: str  # the truth: records of one person share it
    label: str  # what this record is (original, a perturbation, twin, parent...)


@dataclass
class EvaluationSet:
    records: list[Record] = field(default_factory=list)

    def true_pairs(self) -> set[tuple[str, str]]:
        by_person: dict[str, list[str]] = {}
        for r in self.records:
            by_person.setdefault(r.person, []).append(r.patient["id"])
        return {
            pair(a, b)
            for ids in by_person.values()
            for i, a in enumerate(ids)
            for b in ids[i + 1 :]
        }


def pair(a: str, b: str) -> tuple[str, str]:
    return (a, b) if a < b else (b, a)


def build_set(people: list[dict[str, Any]], seed: int = 17) -> EvaluationSet:
    """Originals, perturbed duplicates and hard negatives (module docstring), shuffled into
    the order they arrive in."""
    rng = random.Random(seed)
    out = EvaluationSet()
    counter = iter(range(10**9))

    def add(patient: dict[str, Any], person: str, label: str, source: str, ssn: str | None) -> None:
        number = next(counter)
        patient["id"] = f"r{number}"
        patient["identifier"] = [
            {"system": f"urn:fhirhub:eval:{source}", "value": f"{source}-{number}"}
        ]
        if ssn:
            patient["identifier"].append({"system": SSN, "value": ssn})
        out.records.append(Record(patient, person, label))

    for index, person in enumerate(people):
        ssn = next(
            (i["value"] for i in person.get("identifier", []) if i.get("system") == SSN), None
        )
        key = f"person-{index}"
        add(_clean(person), key, "original", "home", ssn)
        for copy in range(rng.choice([1, 1, 2])):
            kind = DUPLICATE_KINDS[(index * 3 + copy) % len(DUPLICATE_KINDS)]
            dup = _clean(person) if kind == "exact-copy" else perturb(person, kind, rng)
            add(dup, key, kind, f"source{copy + 1}", ssn if rng.random() < 1 / 3 else None)
        if index % 10 == 3 and person.get("birthDate"):  # a twin
            twin = _clean(person)
            others = [
                p for p in people if p is not person and p.get("gender") == person.get("gender")
            ]
            twin["name"][0]["given"] = [_given(_clean(rng.choice(others or people)))]
            if twin["name"][0]["given"] == [_given(_clean(person))]:
                twin["name"][0]["given"] = ["Morgan"]
            add(twin, f"{key}-twin", "twin", "home", None)
        if index % 10 == 7 and person.get("birthDate"):  # a parent of the same name
            parent = _clean(person)
            year = int(person["birthDate"][:4]) - rng.randint(20, 40)
            parent["birthDate"] = f"{year}{person['birthDate'][4:]}"
            add(parent, f"{key}-parent", "parent-same-name", "home", None)
    rng.shuffle(out.records)
    return out


# -- running the MPI and the baseline ----------------------------------------------------------


@dataclass
class Outcome:
    auto: set[tuple[str, str]]  # pairs in one linked cluster
    review: set[tuple[str, str]]  # pairs sent to review (not linked)


def clusters(links: set[tuple[str, str]], ids: list[str]) -> set[tuple[str, str]]:
    """Every pair inside the connected components of ``links`` (what Persons are)."""
    parent = {i: i for i in ids}

    def find(x: str) -> str:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for a, b in links:
        parent[find(a)] = find(b)
    groups: dict[str, list[str]] = {}
    for i in ids:
        groups.setdefault(find(i), []).append(i)
    return {pair(a, b) for g in groups.values() for i, a in enumerate(g) for b in g[i + 1 :]}


def run_mpi(evaluation: EvaluationSet, service: Any) -> Outcome:
    """Feed the records in arrival order through the MPI's index and matcher, as the
    consumer does, collecting its automatic links and its reviews."""
    from fhirhub.plugins.mpi.features import features_of

    links: set[tuple[str, str]] = set()
    review: set[tuple[str, str]] = set()
    for record in evaluation.records:
        features = features_of(record.patient)
        for verdict in service.matcher.match("eval", features):
            other = verdict.candidate_id
            if verdict.grade == "certain":
                links.add(pair(features.patient_id, other))
            elif verdict.grade in ("probable", "possible"):
                review.add(pair(features.patient_id, other))
        service.index.put("eval", features)
    ids = [r.patient["id"] for r in evaluation.records]
    auto = clusters(links, ids)
    return Outcome(auto, review - auto)


def run_exact_identifier(evaluation: EvaluationSet) -> Outcome:
    """The baseline: records sharing any identifier (system and value) are one person."""
    seen: dict[tuple[str, str], str] = {}
    links: set[tuple[str, str]] = set()
    for record in evaluation.records:
        for identifier in record.patient.get("identifier", []):
            key = (identifier["system"], identifier["value"])
            if key in seen:
                links.add(pair(seen[key], record.patient["id"]))
            seen.setdefault(key, record.patient["id"])
    return Outcome(clusters(links, [r.patient["id"] for r in evaluation.records]), set())


def metrics(
    outcome: Outcome, truth: set[tuple[str, str]], evaluation: EvaluationSet
) -> dict[str, Any]:
    true_auto = len(outcome.auto & truth)
    found = outcome.auto | outcome.review
    label = {r.patient["id"]: r.label for r in evaluation.records}
    wrong = sorted(outcome.auto - truth)
    return {
        "auto_links": len(outcome.auto),
        "precision": round(true_auto / len(outcome.auto), 4) if outcome.auto else 1.0,
        "recall": round(true_auto / len(truth), 4) if truth else 1.0,
        "sent_to_review": len(outcome.review),
        "review_true": len(outcome.review & truth),
        "recall_with_review": round(len(found & truth) / len(truth), 4) if truth else 1.0,
        "false_links": [f"{a} ({label[a]}) ~ {b} ({label[b]})" for a, b in wrong[:10]],
        "missed": _labels(truth - found, label),
        "reviewed_not_linked": _labels((truth & outcome.review), label),
    }


def _labels(pairs: set[tuple[str, str]], label: dict[str, str]) -> dict[str, int]:
    """How many pairs of each perturbation (the duplicate's label) are in ``pairs``."""
    counts: dict[str, int] = {}
    for a, b in pairs:
        kind = label[a] if label[a] != "original" else label[b]
        counts[kind] = counts.get(kind, 0) + 1
    return dict(sorted(counts.items()))


def evaluate(people: list[dict[str, Any]], service: Any, seed: int = 17) -> dict[str, Any]:
    evaluation = build_set(people, seed)
    truth = evaluation.true_pairs()
    return {
        "records": len(evaluation.records),
        "true_pairs": len(truth),
        "mpi": metrics(run_mpi(evaluation, service), truth, evaluation),
        "exact_identifier": metrics(run_exact_identifier(evaluation), truth, evaluation),
    }


@contextmanager
def evaluation_service(directory: Path, model: Path | None = None) -> Iterator[Any]:
    """An MPI service on a fresh SQLite hub in ``directory`` (the real index and scorer)."""
    from fhirhub.core.hub import build_hub
    from fhirhub.core.settings import Settings
    from fhirhub.plugins.mpi.service import service_of

    extra = {"plugin_config": {"mpi": {"model_path": str(model)}}} if model else {}
    settings = Settings(
        db=f"sqlite:///{directory / 'eval.db'}",
        data_dir=directory,
        listeners=False,
        plugins="",
        **extra,
    )  # type: ignore[arg-type]
    hub = build_hub(settings)
    try:
        yield service_of(hub)
    finally:
        hub.close()


def train_default(count: int = 4000, seed: int = 2) -> dict[str, Any]:
    """Estimate the shipped model on an invented population with duplicates (unsupervised:
    the truth is not shown to it), disjoint from the evaluation people."""
    from fhirhub.plugins.mpi.features import features_of
    from fhirhub.plugins.mpi.model import train

    people = faker_patients(count, seed)
    evaluation = build_set(people, seed)
    return train([features_of(r.patient).record() for r in evaluation.records], seed=seed)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--sample", action="store_true", help="use the committed sample even if Synthea is there"
    )
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument(
        "--train", action="store_true", help=f"re-estimate {MODEL.relative_to(REPO)}"
    )
    parser.add_argument(
        "--make-sample", action="store_true", help=f"rewrite {SAMPLE.relative_to(REPO)}"
    )
    args = parser.parse_args()
    if args.make_sample:
        SAMPLE.parent.mkdir(parents=True, exist_ok=True)
        SAMPLE.write_text(
            json.dumps(faker_patients(100, seed=1), indent=1, ensure_ascii=False) + "\n"
        )
        print(f"wrote {SAMPLE}")
        return 0
    if args.train:
        MODEL.write_text(json.dumps(train_default(), indent=1) + "\n")
        print(f"wrote {MODEL}")
        return 0
    people, origin = base_people(prefer_synthea=not args.sample)
    with tempfile.TemporaryDirectory() as directory:
        with evaluation_service(Path(directory)) as service:
            figures = evaluate(people, service)
    figures["people"] = origin
    print(json.dumps(figures, indent=1))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
