"""The state one message conversion carries between segment maps."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from fhirhub.adapters.hl7.ack import ErrorLocation
from fhirhub.adapters.hl7.convert.builder import BundleBuilder
from fhirhub.adapters.hl7.convert.datatypes import dtm, uri_for, zone_of
from fhirhub.adapters.hl7.parsing import Message, Segment

#: Segments between a segment and its NTE comments (v2.7+ participations: OBX, PRT, NTE).
_BESIDE_NOTES = frozenset({"NTE", "PRT", "ROL"})


class ConversionError(ValueError):
    """The message is readable but its content cannot be mapped (AE with an ERR segment)."""

    def __init__(
        self,
        message: str,
        *,
        segment: str,
        field: int | None = None,
        sequence: int = 1,
        code: str = "101",
        component: int | None = None,
    ) -> None:
        super().__init__(message)
        self.segment = segment
        self.field = field
        self.sequence = sequence
        self.code = code
        self.component = component

    @property
    def location(self) -> ErrorLocation:
        return ErrorLocation(
            self.code, str(self), self.segment, self.sequence, self.field, self.component
        )


@dataclass
class Conversion:
    message: Message
    builder: BundleBuilder
    patient: str | None = None
    encounter: str | None = None
    #: Every resource reference written, for the Provenance's target list.
    targets: list[str] = field(default_factory=list)
    #: Whether the message owns patient demographics (ADT): then Patient is upserted.
    owns_patient: bool = False
    #: ``system|value`` of the patient's matching identifier, URL-quoted (scopes NK1 ids).
    patient_key: str = ""
    #: Fields that were coerced or dropped: the ACK's ERR segments with severity W.
    warnings: list[ErrorLocation] = field(default_factory=list)
    #: The id of the message's Binary and Provenance; other ids derived from the message
    #: (embedded documents' Binary) start with it.
    key: str = ""
    _notes_taken: set[int] = field(default_factory=set)
    _positions: dict[int, int] = field(default_factory=dict)
    _zone: str | None = None
    _zone_read: bool = False

    def warn(
        self,
        segment: Segment,
        number: int,
        text: str,
        *,
        component: int | None = None,
        code: str = "102",
    ) -> None:
        """Record that field ``number`` (component ``component``) of ``segment`` was not
        stored as sent; ``code`` from table 0357 (102 data type error, 103 table value not
        found, 207 application error)."""
        place = f"{segment.name}-{number}" + (f".{component}" if component else "")
        for known in self.warnings:  # a field read twice (OBR-7 for two resources) warns once
            if (known.segment, known.sequence, known.field, known.component) == (
                segment.name,
                segment.sequence,
                number,
                component,
            ):
                return
        self.warnings.append(
            ErrorLocation(
                code,
                f"{place}: {text}",
                segment.name,
                segment.sequence,
                number,
                component,
                severity="W",
            )
        )

    def notes(self, segment: Segment | None) -> list[dict[str, Any]]:
        """The NTE segments right after ``segment`` as FHIR Annotations (IG "NTE[...]":
        NTE-3 -> ``note.text``), marked as mapped; see :meth:`report_unmapped`."""
        if segment is None:
            return []
        segments = self.message.segments
        if not self._positions:
            self._positions = {id(s): i for i, s in enumerate(segments)}
        notes: list[dict[str, Any]] = []
        index = self._positions.get(id(segment), len(segments)) + 1
        while index < len(segments) and segments[index].name in _BESIDE_NOTES:
            nte = segments[index]
            index += 1
            if nte.name != "NTE":
                continue
            self._notes_taken.add(id(nte))
            text = "\n".join(nte.get(3, 1, repetition=r) for r in range(len(nte.repetitions(3))))
            if text.strip():
                note: dict[str, Any] = {"text": text}
                when = self.date(nte, 6)
                if when:
                    note["time"] = when
                notes.append(note)
        return notes

    def report_unmapped(self) -> None:
        """Warn for every NTE no FHIR element took (its text is kept only in the stored
        message), and note every Z-segment, which are ignored (severity I, code 0)."""
        owner = self.message.segments[0]
        for segment in self.message.segments:
            if segment.name == "NTE":
                if id(segment) not in self._notes_taken and segment.get(3):
                    self.warn(
                        segment,
                        3,
                        f"comment after {owner.name} has no FHIR element to go to; kept only "
                        "in the stored message",
                        code="207",
                    )
                continue
            if segment.name not in _BESIDE_NOTES:
                owner = segment
            if segment.name.startswith("Z"):
                self.warnings.append(
                    ErrorLocation(
                        "0",
                        f"{segment.name}: local Z-segment ignored",
                        segment.name,
                        segment.sequence,
                        severity="I",
                    )
                )

    @property
    def zone(self) -> str | None:
        """The sender's UTC offset, from MSH-7, for timestamps sent without one (chapter 2A
        DTM: "the time zone defaults to that of the local time zone of the sender")."""
        if not self._zone_read:
            self._zone = zone_of(self.message.msh.get(7))
            self._zone_read = True
        return self._zone

    def date(
        self,
        segment: Segment | None,
        number: int,
        component: int = 1,
        *,
        precision: str = "dateTime",
        repetition: int = 0,
    ) -> str | None:
        """The DTM in ``segment``-``number``.``component`` as FHIR ``precision``; a value that
        is not a valid DTM is dropped with a warning naming the field (never guessed)."""
        if segment is None:
            return None
        value = segment.get(number, component, repetition=repetition)
        if not value:
            return None
        found = dtm(value, precision=precision, zone=self.zone)
        if found is None:
            self.warn(
                segment,
                number,
                f"{value!r} is not a valid date/time (YYYY[MM[DD[HHMM[SS]]]][+/-ZZZZ]); not stored",
                component=component if component > 1 else None,
            )
        return found

    @property
    def sender_system(self) -> str:
        """Default identifier system for identifiers without an assigning authority: the
        sending facility (else application) is implicitly the assigner."""
        msh = self.message.msh
        name = msh.get(4, 2) or msh.get(4) or msh.get(3, 2) or msh.get(3) or "unknown"
        return uri_for(name)

    def add(self, resource: dict[str, Any], **kwargs: Any) -> str:
        reference = self.builder.add(resource, **kwargs)
        if reference not in self.targets:
            self.targets.append(reference)
        return reference

    def ref(self, full_url: str | None, display: str | None = None) -> dict[str, Any] | None:
        if full_url is None:
            return None
        out: dict[str, Any] = {"reference": full_url}
        if display:
            out["display"] = display
        return out
