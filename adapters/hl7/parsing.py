"""A tolerant ER7 (pipe-and-hat) reader for HL7 v2.3 to v2.8 messages.

Why not hl7apy for the hot path: hl7apy builds a full element tree checked against the
structure tables of one version. On the 139 real-world sample messages it takes ~50 ms per
message (measured by ``benchmarks/hl7_mllp.py``, which prints the ratio) and rejects messages
that carry segments unknown to their declared version (``PRT`` in a v2.5.1 ORU). The wire is
messier than the standard (HL7 v2.x chapter 2, "Message construction rules": receivers must
ignore unexpected segments and fields), so this module only splits:

* segments on ``\\r`` (the standard's segment terminator) or ``\\r\\n``; on ``\\n`` alone when the
  message has no ``\\r`` at all (files saved with line feeds). Where ``\\r`` separates segments, a
  bare ``\\n`` is a segment break only when a segment name and field separator follow it;
  anywhere else it is part of the field (a report or an embedded document with raw line
  breaks, sent by some senders instead of ``\\.br\\``),
* fields, repetitions, components and sub-components on the separators declared in MSH-1/MSH-2
  (a v2.7+ truncation character in MSH-2 is accepted),
* escape sequences (``\\F\\ \\S\\ \\T\\ \\R\\ \\E\\ \\.br\\ \\Xhh\\``) when a value is read; the bytes
  of ``\\Xhh..\\`` are decoded with the message's character set (MSH-18, HL7 table 0211;
  UTF-8 when MSH-18 is empty), as are the message's own bytes.

One message per call: a second MSH is refused (the messages of a frame or file are split
with :func:`split_messages` first, never merged).

Missing trailing fields and components read as empty strings. ``hl7apy`` is used where its
strictness is wanted: :func:`parse_strict` (versions passed explicitly, never the process-wide
default).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

#: Versions this adapter accepts (MSH-12); HL7 table 0104.
SUPPORTED_VERSIONS = (
    "2.3",
    "2.3.1",
    "2.4",
    "2.5",
    "2.5.1",
    "2.6",
    "2.7",
    "2.7.1",
    "2.8",
    "2.8.1",
    "2.8.2",
)
_SEGMENT_SPLIT = re.compile(r"\r\n|\n|\r")
#: Where ``\r`` ends segments: ``\r``, ``\r\n``, or a bare ``\n`` that starts a segment
#: (three characters of a segment name, then a field separator: any non-alphanumeric).
_CR_SEGMENT_SPLIT = re.compile(r"\r\n?|\n(?=[A-Z][A-Z0-9]{2}[^A-Za-z0-9\s])")
_SEGMENT_NAME = re.compile(r"^[A-Z][A-Z0-9]{2}$")
_HEX_ESCAPE = re.compile(r"^X([0-9A-Fa-f]{2})+$")

#: MSH-18 character sets (HL7 table 0211) -> Python codecs. An unknown or empty MSH-18 means
#: UTF-8 (a superset of the ASCII default the standard names, and what senders use today).
CHARSETS = {
    "ASCII": "ascii",
    "8859/1": "latin-1",
    "8859/2": "iso8859-2",
    "8859/3": "iso8859-3",
    "8859/4": "iso8859-4",
    "8859/5": "iso8859-5",
    "8859/6": "iso8859-6",
    "8859/7": "iso8859-7",
    "8859/8": "iso8859-8",
    "8859/9": "iso8859-9",
    "8859/15": "iso8859-15",
    "UNICODE UTF-8": "utf-8",
    "UNICODE": "utf-8",
    "UNICODE UTF-16": "utf-16",
    "UNICODE UTF-32": "utf-32",
    "ISO IR6": "ascii",
    "ISO IR14": "shift_jis",
    "ISO IR87": "iso2022_jp",
    "ISO IR159": "iso2022_jp_2",
    "ISO IR100": "latin-1",
    "ISO IR192": "utf-8",
    "GB 18030-2000": "gb18030",
    "KS X 1001": "euc_kr",
    "CNS 11643-1992": "big5",
    "BIG-5": "big5",
    "WINDOWS-1252": "cp1252",
}
_MSH_LINE = re.compile(rb"MSH(.)[^\r\n]*")


def charset_codec(msh18: str) -> str:
    """The Python codec for an MSH-18 value (its first repetition); UTF-8 when unknown."""
    name = msh18.strip().upper()
    return CHARSETS.get(name) or CHARSETS.get(name.replace("_", " ")) or "utf-8"


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
    #: The codec ``\\Xhh\\`` escapes decode with: MSH-18's character set (UTF-8 by default).
    charset: str = "utf-8"

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
    #: Which occurrence of this segment name in the message (1 for the first OBX): the
    #: "segment sequence" an ERR segment names (ERR-2.2).
    sequence: int = 1
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
        return self._message_type()[0]

    @property
    def trigger_event(self) -> str:
        return self._message_type()[1]

    def _message_type(self) -> tuple[str, str]:
        """MSH-9.1 and MSH-9.2; a sender writing the structure name alone (``ADT_A01`` in
        MSH-9.1, no MSH-9.2) means the same message type."""
        code, event = self.msh.get(9, 1), self.msh.get(9, 2)
        if not event and len(code) == 7 and code[3] in "_-":
            return code[:3].upper(), code[4:].upper()
        return code.upper(), event.upper()

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
            try:  # the bytes are in the message's character set (MSH-18), not always Latin-1
                out.append(bytes.fromhex(code[1:]).decode(separators.charset))
            except (ValueError, LookupError):
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


def declared_charset(raw: bytes) -> str:
    """MSH-18 read straight from the bytes (MSH itself is ASCII), "" when absent."""
    found = _MSH_LINE.search(raw[:4096])
    if found is None:
        return ""
    separator = found.group(1)
    fields = found.group(0).split(separator)
    if len(fields) <= 17:
        return ""
    component = fields[1][:1] or b"^"
    repetition = fields[1][1:2] or b"~"
    value = fields[17].split(repetition)[0].split(component)[0]
    return value.decode("latin-1").strip()


def decode(raw: bytes) -> str:
    """Bytes to text with the character set MSH-18 declares (HL7 table 0211).

    Without MSH-18, or where it names UTF-8 or ASCII: UTF-8 (BOM stripped) when valid, else
    ISO 8859-1, which never fails. A single-byte set that MSH-18 names (8859/5, ...) is used
    as declared; if the bytes do not decode with it, the same fallback applies. The stored
    Binary keeps the original bytes regardless.
    """
    if raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
    declared = declared_charset(raw)
    codec = charset_codec(declared) if declared else "utf-8"
    if codec not in ("utf-8", "ascii"):
        try:
            return raw.decode(codec)
        except (UnicodeDecodeError, LookupError):
            pass
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def split_segments(text: str) -> list[str]:
    """The non-empty segment lines of ``text`` (see the module docstring for the rules)."""
    splitter = _CR_SEGMENT_SPLIT if "\r" in text else _SEGMENT_SPLIT
    return [line for line in splitter.split(text) if line.strip()]


def parse(raw: bytes | str) -> Message:
    """Split ``raw`` into a :class:`Message`, or raise :class:`Hl7ParseError` saying why."""
    data = raw if isinstance(raw, bytes) else raw.encode("utf-8")
    text = decode(data) if isinstance(raw, bytes) else raw.lstrip("\ufeff")
    text = text.strip("\x0b\x1c\r\n \t\x00")
    lines = split_segments(text)
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
    seen: dict[str, int] = {}
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
        if name == "MSH" and index:  # never merge two messages into one
            raise Hl7ParseError(
                f"A second message starts at line {index + 1} (MSH): send one message per "
                "MLLP frame, or an FHS/BHS batch",
                code="100",
                segment="MSH",
                sequence=2,
            )
        parts = line.split(field_sep)
        if name == "MSH":
            parts = ["MSH", field_sep, *parts[1:]]
        seen[name] = sequence = seen.get(name, 0) + 1
        segments.append(Segment(name, parts, separators, sequence))
    msh = segments[0]
    if msh.raw(18):
        codec = charset_codec(msh.get(18))
        if codec != separators.charset:
            separators = Separators(field_sep, *encoding[:4], charset=codec)  # type: ignore[misc]
            for segment in segments:
                segment.separators = separators
    message = Message(segments, separators, "\r".join(lines), data)
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


#: A segment that starts a message or opens or closes a batch (chapter 2.10.3), at the start
#: of the data or of a line, followed by a field separator.
_MESSAGE_BOUNDARY = re.compile(rb"(?:^|(?<=[\r\n]))(MSH|FHS|BHS|BTS|FTS)(?=[^A-Za-z0-9\s])")


@dataclass(frozen=True)
class Frame:
    """The messages of one MLLP frame, file or HTTP body, each as its exact bytes.

    ``batch`` holds the FHS/BHS header lines when the messages came as a batch (chapter
    2.10.3; their answer is then a batch of ACKs), empty for loose messages.
    """

    messages: list[bytes]
    batch: list[bytes]


def split_messages(raw: bytes) -> Frame:
    """Cut ``raw`` at every MSH into messages (never merged), dropping FHS/BHS/BTS/FTS lines.

    Bytes stay as sent (no decoding), so each message's stored Binary is exactly its part of
    the input. Anything before the first MSH that is not a batch header stays with the first
    message (where :func:`parse` reports it); input without an MSH is one "message".
    """
    marks = [(m.start(), m.group(1)) for m in _MESSAGE_BOUNDARY.finditer(raw)]
    starts = [position for position, name in marks if name == b"MSH"]
    if len(starts) <= 1 and all(name == b"MSH" for _, name in marks):
        return Frame([raw], [])
    batch = [
        raw[p:].split(b"\r", 1)[0].split(b"\n", 1)[0] for p, n in marks if n in (b"FHS", b"BHS")
    ]
    messages: list[bytes] = []
    for index, (position, name) in enumerate(marks):
        if name != b"MSH":
            continue
        end = marks[index + 1][0] if index + 1 < len(marks) else len(raw)
        begin = 0 if position == marks[0][0] and not batch else position
        messages.append(raw[begin:end])
    return Frame(messages or [raw], batch)


def split_batch(text: str) -> list[str]:
    """Messages of an FHS/BHS batch or of several concatenated messages (chapter 2.10.3), or
    ``[text]`` for a single message."""
    return [
        m.decode("utf-8") for m in split_messages(text.lstrip("\ufeff").encode("utf-8")).messages
    ]
