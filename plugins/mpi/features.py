"""What the index keeps of a Patient for matching: normalised demographics and blocking keys.

Normalisation is where most of the matching quality comes from, before any weight is applied:

* names are transliterated to ASCII (``anyascii``: ``Müller`` -> ``muller``, ``Йоханн`` ->
  ``yokhann``), lower-cased, stripped of digits and punctuation; a given name also carries its
  *forms*, the name and its canonical names from the ``nicknames`` data set (``bill`` ->
  ``william``, ``liz`` -> ``elizabeth``), so a nickname agrees with the formal name;
* family names keep every ``HumanName`` (official, usual, maiden), so a married name still
  meets the maiden name;
* the birth date is kept as written (``YYYY-MM-DD``); a day/month swap is a comparison level;
* phone numbers keep their last ten digits, e-mails are lower-cased, postal codes lose spaces.

Blocking keys decide which stored records are compared at all (scoring every record would cost
O(n) per write); each key survives a different perturbation, so a duplicate with a typo in the
family name is still found by its birth date, one with a new address by its name, and so on.
"""

from __future__ import annotations

import functools
import hashlib
import re
from dataclasses import asdict, dataclass, field
from typing import Any

import jellyfish
from anyascii import anyascii

_NOT_LETTERS = re.compile(r"[^a-z]+")
_DIGITS = re.compile(r"\D+")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
#: Generational suffixes: a "Jr" and a "Sr" of the same name are two people.
GENERATIONS = {"jr": "jr", "junior": "jr", "sr": "sr", "senior": "sr", "ii": "ii", "iii": "iii"}


@dataclass(frozen=True)
class Features:
    """The normalised demographics of one Patient (the scoring record and the index row)."""

    patient_id: str
    given: str | None = None
    given_forms: tuple[str, ...] = ()
    family: str | None = None
    family_all: tuple[str, ...] = ()
    birth_date: str | None = None
    sex: str | None = None
    postcode: str | None = None
    address: str | None = None
    phone: str | None = None
    email: str | None = None
    generation: str | None = None
    identifiers: tuple[tuple[str, str], ...] = field(default=())

    def record(self) -> dict[str, Any]:
        """The record splink scores: one column per comparison (see ``model.py``)."""
        return {
            "unique_id": self.patient_id,
            "given": self.given,
            "given_forms": list(self.given_forms),
            "family": self.family,
            "family_all": list(self.family_all),
            "birth_date": self.birth_date,
            "sex": self.sex,
            "postcode": self.postcode,
            "address": self.address,
            "phone": self.phone,
            "email": self.email,
        }

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["identifiers"] = [list(pair) for pair in self.identifiers]
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Features:
        values = dict(data)
        values["given_forms"] = tuple(values.get("given_forms") or ())
        values["family_all"] = tuple(values.get("family_all") or ())
        values["identifiers"] = tuple(tuple(pair) for pair in values.get("identifiers") or ())
        return cls(**values)

    def digest(self) -> str:
        """A hash of everything matching looks at: an update that changes none of it (the
        MPI's own ``Patient.link`` maintenance, a new telecom ``use``) is not matched again."""
        text = repr(sorted((k, repr(v)) for k, v in asdict(self).items()))
        return hashlib.sha256(text.encode()).hexdigest()[:32]

    def blocking_keys(self) -> set[str]:
        """Keys shared by plausible duplicates (module docstring); never empty-valued."""
        keys: set[str] = set()
        year = self.birth_date[:4] if self.birth_date else None
        if self.birth_date:
            keys.add(f"dob:{self.birth_date}")
            month, day = self.birth_date[5:7], self.birth_date[8:10]
            keys.add(f"dobset:{year}:{min(month, day)}{max(month, day)}")
        for family in self.family_all:
            code = jellyfish.soundex(family)
            if year:
                keys.add(f"fam-year:{code}:{year}")
            if self.given:
                keys.add(f"fam-given:{code}:{self.given[0]}")
        for form in self.given_forms:
            if year:
                keys.add(f"given-year:{form}:{year}")
            if self.postcode:
                keys.add(f"given-post:{form}:{self.postcode}")
        if self.phone:
            keys.add(f"phone:{self.phone}")
        if self.email:
            keys.add(f"email:{self.email}")
        return keys


def name_text(value: str | None) -> str | None:
    """ASCII, lower case, letters only (``O'Brien-Smith`` -> ``obriensmith``)."""
    if not value:
        return None
    text = _NOT_LETTERS.sub("", anyascii(value).lower())
    return text or None


#: German transliteration, the other common way to write an umlaut in ASCII (``ü`` -> ``ue``);
#: ``anyascii`` drops the diacritic (``ü`` -> ``u``). A name with one keeps both forms.
_GERMAN = str.maketrans(
    {"ä": "ae", "ö": "oe", "ü": "ue", "Ä": "Ae", "Ö": "Oe", "Ü": "Ue", "ß": "ss"}
)


def name_variants(value: str | None) -> set[str]:
    """Every ASCII spelling of ``value`` the index keeps (``Müller``: muller, mueller)."""
    variants = {name_text(value), name_text(value.translate(_GERMAN)) if value else None}
    return {v for v in variants if v}


@functools.cache
def _nicknamer() -> Any:
    from nicknames import NickNamer

    return NickNamer()


@functools.lru_cache(maxsize=65536)
def given_forms(given: str) -> tuple[str, ...]:
    """The name and its canonical (formal) names: ``bill`` -> (bill, robert, william, ...)."""
    canonicals = {name_text(name) for name in _nicknamer().canonicals_of(given)}
    return tuple(sorted({given} | {name for name in canonicals if name}))


def _official_name(names: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The name a person goes by: official, else usual, else any current one, else the first."""
    for use in ("official", "usual"):
        for name in names:
            if name.get("use") == use:
                return name
    current = [n for n in names if n.get("use") not in ("old", "maiden")]
    return (current or names)[0] if names else None


def _date(value: Any) -> str | None:
    if isinstance(value, str) and _DATE.match(value):
        return value
    return None


def features_of(patient: dict[str, Any]) -> Features:
    """The :class:`Features` of a Patient resource (a dict as stored)."""
    names = [n for n in patient.get("name") or [] if isinstance(n, dict)]
    official = _official_name(names) or {}
    given_list = official.get("given") or []
    given = name_text(given_list[0]) if given_list else None
    if given is None and official.get("text"):
        parts = str(official["text"]).split()
        given = name_text(parts[0]) if len(parts) > 1 else None
    family = name_text(official.get("family"))
    if family is None and official.get("text"):
        parts = str(official["text"]).split()
        family = name_text(parts[-1]) if parts else None
    family_all = {v for n in names for v in name_variants(n.get("family"))} | {family}
    generation = None
    for suffix in official.get("suffix") or []:
        generation = GENERATIONS.get((name_text(suffix) or ""), generation)
    address = next(iter(patient.get("address") or []), None) or {}
    postcode = str(address.get("postalCode") or "").replace(" ", "").upper() or None
    line = " ".join(str(part) for part in address.get("line") or [])
    phone = email = None
    for telecom in patient.get("telecom") or []:
        value = str(telecom.get("value") or "")
        if telecom.get("system") == "phone" and phone is None:
            phone = _DIGITS.sub("", value)[-10:] or None
        elif telecom.get("system") == "email" and email is None:
            email = value.strip().lower() or None
    identifiers = tuple(
        sorted(
            {
                (str(i["system"]), str(i["value"]))
                for i in patient.get("identifier") or []
                if isinstance(i, dict) and i.get("system") and i.get("value")
            }
        )
    )
    gender = patient.get("gender")
    return Features(
        patient_id=str(patient.get("id") or ""),
        given=given,
        given_forms=tuple(
            sorted(
                {
                    f
                    for g in name_variants(given_list[0] if given_list else None)
                    for f in given_forms(g)
                }
                | set(given_forms(given))
            )
        )
        if given
        else (),
        family=family,
        family_all=tuple(sorted(n for n in family_all if n)),
        birth_date=_date(patient.get("birthDate")),
        sex=gender if gender in ("male", "female") else None,
        postcode=postcode,
        address=" ".join(anyascii(line).lower().split()) or None,
        phone=phone,
        email=email,
        generation=generation,
        identifiers=identifiers,
    )
