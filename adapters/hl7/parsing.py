"""A tolerant ER7 (pipe-and-hat) reader for HL7 v2.3 to v2.8 messages.

Why not hl7apy for the hot path: hl7apy builds a full element tree checked against the
structure tables of one version. On the 139 real-world sample messages it takes ~50 ms per
message (measured by ``benchmarks/hl7_mllp.py``, which prints the ratio) and rejects messages
that carry segments unknown to their declared version (``PRT`` in a v2.5.1 ORU). The wire is
messier than the standard (HL7 v2.x chapter 2, "Message construction rules": receivers must
ignore unexpected segments and fields), so this module only splits:

* segments on ``\\r``, ``\\n`` or ``\\r\\n`` (files and some senders use line feeds),
* fields, repetitions, components and sub-components on the separators declared in MSH-1/MSH-2
  (a v2.7+ truncation character in MSH-2 is accepted),
* escape sequences (``\\F\\ \\S\\ \\T\\ \\R\\ \\E\\ \\.br\\ \\Xhh\\``) when a value is read.

Missing trailing fields and components read as empty strings. ``hl7apy`` is used where its
strictness is wanted: :func:`parse_strict` (versions passed explicitly, never the process-wide
default).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

#: Versions this adapter accepts (MSH-12); HL7 table 0104.
SUPPORTED_VERSIONS = ("2.3", "2.3.1", "2.4", "2.5", "2.5.1", "2.6", "2.7", "2.7.1", "2.8")
_SEGMENT_SPLIT = re.compile(r"\r\n|\n|\r")
_SEGMENT_NAME = re.compile(r"^[A-Z][A-Z0-9]{2}$")
_HEX_ESCAPE = re.compile(r"^X([0-9A-Fa-f]{2})+$")


class Hl7ParseError(ValueError):
    """A message that cannot be read; ``segment``/``field`` locate it for the ERR segment.

    ``code`` is from HL7 table 0357 (message error condition codes): 100 segment sequence
    error, 102 data type error, 200 unsupported message type, 203 unsupported version id,
    207 application internal error.
    """

    def __init__(
        self,
        message: str,
        *,
        code: str = "100",
        segment: str = "MSH",
        sequence: int = 1,
        field: int | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.segment = segment
        self.sequence = sequence
        self.field = field


@dataclass(frozen=True)
class Separators:
    """MSH-1 and MSH-2 (HL7 v2 chapter 2.5.4 "Message delimiters")."""

    field: str = "|"
    component: str = "^"
    repetition: str = "~"
    escape: str = "\\"
    subcomponent: str = "&"

    @property
    def encoding_characters(self) -> str:
        return self.component + self.repetition + self.escape + self.subcomponent


DEFAULT_SEPARATORS = Separators()


@dataclass
class Segment:
    """One segment; ``fields[0]`` is the name, ``fields[n]`` is field n (MSH shifted so that
    ``fields[1]`` is MSH-1, the field separator, as the standard numbers them)."""

    name: str
    fields: list[str]
    separators: Separators
    #: Memo of :meth:`get` and :meth:`repetitions`: converters read the same fields many
    #: times (MSH-3/4/10 for every full URL, PID-3 for every identifier), and a parsed
    #: segment never changes. Callers get shared lists: they must not mutate them.
    _memo: dict[tuple[int, ...], object] = field(default_factory=dict, repr=False, compare=False)

    def raw(self, number: int) -> str:
        """Field ``number`` as sent (escapes and separators untouched), "" if absent."""
        return self.fields[number] if number < len(self.fields) else ""

    def repetitions(self, number: int) -> list[str]:
        key = (number,)
        found = self._memo.get(key)
        if found is not None:
            return found  # type: ignore[return-value]
        value = self.raw(number)
        if not value:
            reps: list[str] = []
        elif self.name == "MSH" and number <= 2:
            reps = [value]
        else:
            reps = [r for r in value.split(self.separators.repetition) if r != ""]
        self._memo[key] = reps
        return reps

    def components(self, number: int, repetition: int = 0) -> list[str]:
        reps = self.repetitions(number)
        if repetition >= len(reps):
            return []
        return reps[repetition].split(self.separators.component)

    def get(self, number: int, component: int = 1, sub: int = 0, repetition: int = 0) -> str:
        """Unescaped value of field ``number``, component ``component`` (1-based), optional
        sub-component ``sub`` (1-based; 0 = whole component), repetition ``repetition``."""
        key = (number, component, sub, repetition)
        found = self._memo.get(key)
        if found is not None:
            return found  # type: ignore[return-value]
        comps = self.components(number, repetition)
        if component > len(comps):
            value = ""
        else:
            value = comps[component - 1]
            if sub:
                subs = value.split(self.separators.subcomponent)
                value = subs[sub - 1] if sub <= len(subs) else ""
            value = unescape(value, self.separators).strip()
        self._memo[key] = value
        return value


@dataclass
class Message:
    """A split message: segments in order, plus the header facts every step needs."""

    segments: list[Segment]
    separators: Separators
    text: str
    raw: bytes = b""
    _by_name: dict[str, list[Segment]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for segment in self.segments:
            self._by_name.setdefault(segment.name, []).append(segment)

    @property
    def msh(self) -> Segment:
        return self.segments[0]

    def all(self, name: str) -> list[Segment]:
        return self._by_name.get(name, [])

    def first(self, name: str) -> Segment | None:
        found = self._by_name.get(name)
        return found[0] if found else None

    @property
    def version(self) -> str:
        return self.msh.get(12)

    @property
    def control_id(self) -> str:
        return self.msh.get(10)

    @property
    def message_code(self) -> str:
        return self.msh.get(9, 1)

    @property
    def trigger_event(self) -> str:
        return self.msh.get(9, 2)

    @property
    def message_type(self) -> str:
        """``ADT^A01`` style: MSH-9.1 and MSH-9.2."""
        return f"{self.message_code}^{self.trigger_event}"

    @property
    def sender(self) -> str:
        """Sending application and facility (MSH-3, MSH-4): who owns MSH-10's uniqueness."""
        app = self.msh.get(3) or self.msh.get(3, 2)
        facility = self.msh.get(4) or self.msh.get(4, 2)
        return f"{app}@{facility}"


def unescape(value: str, separators: Separators = DEFAULT_SEPARATORS) -> str:
    """Resolve HL7 escape sequences (chapter 2.7.4). Unknown sequences are kept verbatim."""
    esc = separators.escape
    if esc not in value:
        return value
    parts = value.split(esc)
    if len(parts) % 2 == 0:  # an unpaired escape character: not an escape sequence
        return value
    out = [parts[0]]
    for i in range(1, len(parts), 2):
        code, text = parts[i], parts[i + 1]
        if code == "F":
            out.append(separators.field)
        elif code == "S":
            out.append(separators.component)
        elif code == "T":
            out.append(separators.subcomponent)
        elif code == "R":
            out.append(separators.repetition)
        elif code == "E":
            out.append(esc)
        elif code == ".br":
            out.append("\n")
        elif _HEX_ESCAPE.match(code):
            try:
                out.append(bytes.fromhex(code[1:]).decode("latin-1"))
            except ValueError:
                out.append(esc + code + esc)
        elif code.startswith((".sp", ".in", ".ti", ".fi", ".nf", ".sk", ".ce", "H", "N")):
            pass  # formatting hints (2.7.6) carry no data
        else:
            out.append(esc + code + esc)
        out.append(text)
    return "".join(out)


def escape(value: str, separators: Separators = DEFAULT_SEPARATORS) -> str:
    """The inverse of :func:`unescape` for the delimiter characters (used in ACK text)."""
    esc = separators.escape
    value = value.replace(esc, f"{esc}E{esc}")
    for char, code in (
        (separators.field, "F"),
        (separators.component, "S"),
        (separators.subcomponent, "T"),
        (separators.repetition, "R"),
    ):
        value = value.replace(char, f"{esc}{code}{esc}")
    return value.replace("\r", " ").replace("\n", " ")


def decode(raw: bytes) -> str:
    """Bytes to text: UTF-8 (BOM stripped) when valid, else ISO 8859-1, which never fails.

    MSH-18 (character set) is advisory and often wrong on the wire; falling back keeps every
    byte, and the stored Binary keeps the original bytes regardless.
    """
    if raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def parse(raw: bytes | str) -> Message:
    """Split ``raw`` into a :class:`Message`, or raise :class:`Hl7ParseError` saying why."""
    data = raw if isinstance(raw, bytes) else raw.encode("utf-8")
    text = decode(data) if isinstance(raw, bytes) else raw.lstrip("\ufeff")
    text = text.strip("\x0b\x1c\r\n \t\x00")
    lines = [line for line in _SEGMENT_SPLIT.split(text) if line.strip()]
    if not lines or not lines[0].startswith("MSH"):
        found = lines[0][:3] if lines else "nothing"
        raise Hl7ParseError(
            f"The message must start with an MSH segment, found {found!r}",
            code="100",
            segment="MSH",
        )
    header = lines[0]
    if len(header) < 8:
        raise Hl7ParseError("MSH is too short to hold its delimiters", code="102", field=2)
    field_sep = header[3]
    encoding = header[4:].split(field_sep, 1)[0]
    if (
        field_sep.isalnum()
        or len(encoding) < 4
        or len(set(encoding[:4] + field_sep)) != 5
        or any(c.isalnum() or c.isspace() for c in encoding[:4])
    ):
        raise Hl7ParseError(
            f"Broken delimiters: MSH-1 {field_sep!r}, MSH-2 {encoding!r} must be five distinct "
            "non-alphanumeric characters",
            code="102",
            field=2,
        )
    separators = Separators(field_sep, encoding[0], encoding[1], encoding[2], encoding[3])
    segments: list[Segment] = []
    for index, line in enumerate(lines):
        line = line.rstrip()
        name = line[:3]
        if not _SEGMENT_NAME.match(name) or (len(line) > 3 and line[3] != field_sep):
            raise Hl7ParseError(
                f"Line {index + 1} is not a segment: {line[:20]!r}",
                code="100",
                segment=name if _SEGMENT_NAME.match(name) else "MSH",
                sequence=index + 1,
            )
        parts = line.split(field_sep)
        if name == "MSH":
            parts = ["MSH", field_sep, *parts[1:]]
        segments.append(Segment(name, parts, separators))
    message = Message(segments, separators, "\r".join(lines), data)
    msh = message.msh
    if not msh.get(9, 1):
        raise Hl7ParseError("MSH-9 (message type) is empty", code="101", field=9)
    if not msh.get(10):
        raise Hl7ParseError("MSH-10 (message control id) is empty", code="101", field=10)
    version = msh.get(12)
    if version not in SUPPORTED_VERSIONS:
        raise Hl7ParseError(
            f"MSH-12 version {version!r} is not supported (accepted: "
            f"{', '.join(SUPPORTED_VERSIONS)})",
            code="203",
            field=12,
        )
    return message


def parse_strict(text: str, version: str) -> object:
    """Parse with hl7apy against the structures of ``version`` (passed explicitly: hl7apy's
    process-wide default version is never set). Raises hl7apy's errors unchanged."""
    from hl7apy.consts import VALIDATION_LEVEL
    from hl7apy.parser import parse_message

    normalised = "\r".join(line for line in _SEGMENT_SPLIT.split(text) if line.strip())
    if version not in SUPPORTED_VERSIONS:
        raise Hl7ParseError(f"Unsupported version {version!r}", code="203", field=12)
    # hl7apy takes the structure version from MSH-12 of the text (never from its process-wide
    # default when MSH-12 is present); insisting that it equals the caller's ``version`` keeps
    # the choice explicit.
    declared = parse(normalised).version
    if declared != version:
        raise Hl7ParseError(f"MSH-12 says {declared!r}, expected {version!r}", code="203", field=12)
    return parse_message(normalised, validation_level=VALIDATION_LEVEL.TOLERANT, find_groups=False)


def split_batch(text: str) -> list[str]:
    """Messages of an FHS/BHS batch (chapter 2.10.3), or ``[text]`` for a single message."""
    lines = [line for line in _SEGMENT_SPLIT.split(text.lstrip("\ufeff")) if line.strip()]
    messages: list[list[str]] = []
    for line in lines:
        name = line[:3]
        if name in ("FHS", "BHS", "FTS", "BTS"):
            continue
        if name == "MSH" or not messages:
            messages.append([line])
        else:
            messages[-1].append(line)
    return ["\r".join(m) for m in messages]
