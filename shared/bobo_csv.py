"""BOBO CSV bytes -> `DutyEvent` or `Rejection`, one per data row, streaming (docs/design.md#input-format).

`read_bobo_csv` consumes an iterable of byte chunks with arbitrary boundaries (a chunk may split a
multi-byte character or a CRLF) and yields as it goes: memory is bounded by one record plus one chunk,
never by the file size.

Forms, decided by the first non-blank row:
- that row holds the ten column names (any case, whitespace trimmed, in the table's order): a header,
  then 10-column rows;
- that row is `Employee_ID,Status,Timestamp` (any case): the simple form, 3-column rows;
- anything else: no header, every row (that one included) is judged as a 10-column row, so a garbage
  first line becomes one rejected row with a clear reason.
A later row equal to the header of the form in use (files concatenated with `cat`) is also a header.
Headers and blank lines (empty or whitespace only) are neither data nor rejected; a row of only commas
is data (and rejected). Every other record yields exactly one item, so the count of items is the
`rows_read` of the command line (docs/design.md#command-line).

Decisions a caller may rely on:
- Every date/time column must be a real calendar date/time: a row with "an invalid date/time" is rejected.
  DateTime_Created is only the tie-break, so an *empty* one is absent, not invalid: the event counts as
  created at its event time, exactly like a row of the simple form (dropping a real book-on because its
  tie-break column is blank would lose the update). A non-empty malformed one rejects the row.
- Encoding: a UTF-8 BOM is dropped. Lines are decoded as UTF-8 until the first line that is not valid
  UTF-8; from that line on the rest of the file is cp1252. Lines yielded earlier were valid UTF-8 (for
  ASCII both codings agree; cp1252 text that is also valid UTF-8 needs byte pairs such as "Ã©", which
  BOBO data does not contain), and the CSV structure never depends on the choice because commas,
  quotes and newlines are ASCII in both. This is what lets the file be read in one streaming pass.
  The five bytes cp1252 leaves undefined become U+FFFD instead of failing the file.
- `UnreadableFile` is raised only for a UTF-16/UTF-32 byte order mark (an Excel "Unicode text" save),
  and always before the first item is yielded, so a caller never holds partial output of such a file.
- A physical line longer than `MAX_LINE_BYTES` is not buffered: its record is rejected.
  A CSV syntax error the `csv` module refuses (a bare CR inside a line, a quoted field over
  `csv.field_size_limit()`) rejects that record; the rest of the file is still read. As RFC 4180 has
  it, a field that opens a quote and never closes it runs on over the following lines, so they become
  one (rejected) record.
- Row numbers are 1-based physical line numbers counting header and blank lines; a record spanning
  lines (a quoted newline) has the number of its first line.
"""

from __future__ import annotations

import codecs
import csv
import enum
import functools
import io
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime

# No BOBO row comes near this; a longer line is garbage and is not held in memory.
MAX_LINE_BYTES = 64 * 1024
# Bound on the raw text kept for one rejected record (the rejects file stays readable).
RAW_TEXT_LIMIT = 2000

TEN_COLUMN_HEADER = (
    "transaction_type",
    "employee_id",
    "payroll_id",
    "clocking_date",
    "clocking_time",
    "datetime_created",
    "geo_status",
    "latitude",
    "longitude",
    "accuracy",
)
SIMPLE_HEADER = ("employee_id", "status", "timestamp")

_TIMESTAMP = re.compile(r"([0-9]{4})-([0-9]{2})-([0-9]{2}) ([0-9]{2}):([0-9]{2}):([0-9]{2})")
_UTF16_32_BOMS = (codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE, codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)
# OWASP CSV injection: cells starting with these are formulas (or become one) in spreadsheet programs.
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


class Action(enum.Enum):
    BOOK_ON = "BON"
    BOOK_OFF = "BOF"


@dataclass(frozen=True, slots=True)
class DutyEvent:
    """One accepted data row.

    `event_time` is the naive local wall-clock time BOBO recorded (zone `BOBO_TIMEZONE`, not applied here).
    `created` is DateTime_Created, or None in the simple 3-column form.
    """

    row_number: int
    employee_id: str
    raw_employee_id: str
    action: Action
    event_time: datetime
    created: datetime | None


@dataclass(frozen=True, slots=True)
class Rejection:
    """One rejected data row: `reason` names every problem found; `raw_text` is the record as in the file
    (lines joined with LF, at most `RAW_TEXT_LIMIT` characters)."""

    row_number: int
    reason: str
    raw_text: str


class UnreadableFile(ValueError):
    """The file is not a text file this reader can decode; raised before anything is yielded."""


class _Form(enum.Enum):
    TEN_COLUMNS = 10
    SIMPLE = 3


def normalise_employee_id(value: str) -> str:
    """Trim whitespace and leading zeros: "  00123 " -> "123", "000" -> "0", "" -> ""."""
    trimmed = value.strip()
    stripped = trimmed.lstrip("0")
    if trimmed and not stripped:
        return "0"
    return stripped


def read_bobo_csv(chunks: Iterable[bytes]) -> Iterator[DutyEvent | Rejection]:
    """Yield one `DutyEvent` or `Rejection` per data row, in file order, as the chunks arrive.

    A file with no data row (zero bytes, header only, blank lines only) yields nothing.
    Raises `UnreadableFile` (before the first item) for a UTF-16/UTF-32 file.
    """
    lines = _LineSource(_decoded_lines(_physical_lines(chunks)))
    # skipinitialspace lets ` "a,b"` be a quoted field; trailing spaces are trimmed per field below.
    reader = csv.reader(lines, skipinitialspace=True)
    form: _Form | None = None
    while True:
        lines.begin_record()
        try:
            fields = next(reader)
        except StopIteration:
            return
        except csv.Error as error:
            form = form or _Form.TEN_COLUMNS
            yield lines.rejection(f"unreadable CSV record: {error}")
            continue
        if lines.overlong:
            form = form or _Form.TEN_COLUMNS
            yield lines.rejection(f"line longer than {MAX_LINE_BYTES} bytes")
            continue
        values = [value.strip() for value in fields]
        if len(values) <= 1 and not (values and values[0]):
            continue  # blank line
        if form is None:
            form = _Form.SIMPLE if _is_header(values, SIMPLE_HEADER) else _Form.TEN_COLUMNS
        if _is_header(values, SIMPLE_HEADER if form is _Form.SIMPLE else TEN_COLUMN_HEADER):
            continue
        if form is _Form.SIMPLE:
            yield _simple_row(lines.start, values) or lines.rejection(_simple_problems(values))
        else:
            yield _ten_column_row(lines.start, values) or lines.rejection(_ten_column_problems(values))


def rejects_csv(rejections: Iterable[Rejection]) -> bytes:
    """The rejects file: UTF-8 (no BOM), CRLF, header `row_number,reason,raw_text`, one line per rejection.

    Text cells starting with = + - @ TAB or CR (also after leading spaces) get a leading apostrophe so a
    spreadsheet shows them as text instead of running them as formulas (OWASP CSV injection).
    """
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(("row_number", "reason", "raw_text"))
    for rejection in rejections:
        writer.writerow(
            (rejection.row_number, _spreadsheet_safe(rejection.reason), _spreadsheet_safe(rejection.raw_text))
        )
    return out.getvalue().encode("utf-8")


def _spreadsheet_safe(text: str) -> str:
    # Spaces first: some spreadsheet programs drop leading spaces before deciding what a cell is.
    if text.lstrip(" ").startswith(_FORMULA_STARTS):
        return "'" + text
    return text


# --- rows ---------------------------------------------------------------------------------------


def _is_header(values: list[str], names: tuple[str, ...]) -> bool:
    # The length and first-name checks keep the per-row cost negligible on data rows.
    return (
        len(values) == len(names)
        and values[0].lower() == names[0]
        and all(value.lower() == name for value, name in zip(values, names, strict=True))
    )


def _ten_column_row(row_number: int, values: list[str]) -> DutyEvent | None:
    """The event of a valid 10-column row; None when the row has any problem (see _ten_column_problems)."""
    if len(values) != 10:
        return None
    action = _action(values[0])
    employee_id = normalise_employee_id(values[1])
    date, time = values[3], values[4]
    event_time = _compact_datetime(date + time) if len(date) == 8 and len(time) == 6 else None
    created = _compact_datetime(values[5]) if values[5] else None
    if action is None or not employee_id or event_time is None or (values[5] and created is None):
        return None
    return DutyEvent(row_number, employee_id, values[1], action, event_time, created)


def _ten_column_problems(values: list[str]) -> str:
    if len(values) != 10:
        return f"expected 10 columns, found {len(values)}"
    problems = []
    if _action(values[0]) is None:
        problems.append(f"unknown transaction type {values[0]!r}")
    if not values[1]:
        problems.append("empty employee id")
    # Date and time are judged apart so the reason names the bad one; together they are valid
    # exactly when both are (checked by _ten_column_row as one value).
    if len(values[3]) != 8 or _compact_datetime(values[3] + "000000") is None:
        problems.append(f"invalid Clocking_Date {values[3]!r}")
    if len(values[4]) != 6 or _compact_datetime("20000101" + values[4]) is None:
        problems.append(f"invalid Clocking_Time {values[4]!r}")
    if values[5] and _compact_datetime(values[5]) is None:
        problems.append(f"invalid DateTime_Created {values[5]!r}")
    return "; ".join(problems)


def _simple_row(row_number: int, values: list[str]) -> DutyEvent | None:
    if len(values) != 3:
        return None
    employee_id = normalise_employee_id(values[0])
    action = _status(values[1])
    event_time = _timestamp(values[2])
    if action is None or not employee_id or event_time is None:
        return None
    return DutyEvent(row_number, employee_id, values[0], action, event_time, None)


def _simple_problems(values: list[str]) -> str:
    if len(values) != 3:
        return f"expected 3 columns, found {len(values)}"
    problems = []
    if not values[0]:
        problems.append("empty employee id")
    if _status(values[1]) is None:
        problems.append(f"unknown status {values[1]!r} (expected On Duty or Off Duty)")
    if _timestamp(values[2]) is None:
        problems.append(f"invalid Timestamp {values[2]!r} (expected YYYY-MM-DD HH:MM:SS)")
    return "; ".join(problems)


def _action(value: str) -> Action | None:
    upper = value.upper()
    if upper == "BON":
        return Action.BOOK_ON
    if upper == "BOF":
        return Action.BOOK_OFF
    return None


def _status(value: str) -> Action | None:
    words = " ".join(value.lower().split())
    if words == "on duty":
        return Action.BOOK_ON
    if words == "off duty":
        return Action.BOOK_OFF
    return None


def _timestamp(text: str) -> datetime | None:
    """`YYYY-MM-DD HH:MM:SS` as a real calendar date and time, else None."""
    match = _TIMESTAMP.fullmatch(text)
    return _compact_datetime("".join(match.groups())) if match else None


# Rows of one export share a handful of seconds; caching the parse halves the cost of a row.
@functools.lru_cache(maxsize=4096)
def _compact_datetime(text: str) -> datetime | None:
    """`YYYYMMDDHHMMSS` (ASCII digits only) as a real calendar date and time, else None."""
    # isascii() first: str.isdigit() alone would accept other scripts' digits and superscripts.
    if len(text) != 14 or not text.isascii() or not text.isdigit():
        return None
    try:
        return datetime(
            int(text[0:4]), int(text[4:6]), int(text[6:8]), int(text[8:10]), int(text[10:12]), int(text[12:14])
        )
    except ValueError:
        return None


# --- bytes -> lines ---------------------------------------------------------------------------


class _Overlong:
    """Stands in for a physical line longer than MAX_LINE_BYTES (its bytes are dropped)."""


_OVERLONG = _Overlong()


def _without_bom(chunks: Iterable[bytes]) -> Iterator[bytes]:
    """The chunks with a UTF-8 BOM removed; raises UnreadableFile on a UTF-16/UTF-32 BOM."""
    head = b""
    iterator = iter(chunks)
    for chunk in iterator:
        head += chunk
        if len(head) >= 4:
            break
    if head.startswith(_UTF16_32_BOMS):
        raise UnreadableFile("the file is UTF-16 or UTF-32 encoded; save it as CSV (UTF-8 or Windows-1252)")
    yield head.removeprefix(codecs.BOM_UTF8)
    yield from iterator


def _physical_lines(chunks: Iterable[bytes]) -> Iterator[list[bytes] | _Overlong]:
    """Blocks of complete physical lines (each ending in LF, except the file's last line) as found in the
    chunks received so far. Holds at most one chunk plus one partial line of up to MAX_LINE_BYTES."""
    pending: list[bytes] = []  # the start of a line whose LF has not arrived yet
    pending_size = 0
    skipping = False  # inside an overlong line: its bytes are dropped up to its LF
    for chunk in _without_bom(chunks):
        parts = chunk.split(b"\n")
        if len(parts) == 1:  # no line ends in this chunk
            if not skipping and chunk:
                pending.append(chunk)
                pending_size += len(chunk)
                if pending_size > MAX_LINE_BYTES:
                    pending, pending_size, skipping = [], 0, True
            continue
        block: list[bytes] = []
        if skipping or pending_size + len(parts[0]) > MAX_LINE_BYTES:
            yield _OVERLONG
        else:
            pending.append(parts[0])
            block.append(b"".join(pending) + b"\n")
        pending, pending_size, skipping = [], 0, False
        for part in parts[1:-1]:
            if len(part) > MAX_LINE_BYTES:
                if block:
                    yield block
                    block = []
                yield _OVERLONG
            else:
                block.append(part + b"\n")
        if block:
            yield block
        last = parts[-1]
        if len(last) > MAX_LINE_BYTES:
            skipping = True
        elif last:
            pending, pending_size = [last], len(last)
    if skipping:
        yield _OVERLONG
    elif pending_size:
        yield [b"".join(pending)]


def _decoded_lines(blocks: Iterator[list[bytes] | _Overlong]) -> Iterator[str | _Overlong]:
    """Lines as text: UTF-8 until the first line that is not valid UTF-8, cp1252 from that line on."""
    utf8 = True
    for block in blocks:
        if isinstance(block, _Overlong):
            yield block
            continue
        if utf8:
            for index, line in enumerate(block):
                try:
                    yield line.decode("utf-8")
                except UnicodeDecodeError:
                    utf8 = False
                    yield from (rest.decode("cp1252", errors="replace") for rest in block[index:])
                    break
        else:
            for line in block:
                yield line.decode("cp1252", errors="replace")


class _LineSource:
    """Feeds lines to csv.reader and remembers, for the record being read, its first line number, its
    raw text, and whether an overlong line was part of it."""

    def __init__(self, lines: Iterator[str | _Overlong]):
        self._lines = lines
        self.line_number = 0  # lines handed to csv.reader so far
        self.start = 1
        self.overlong = False
        self._record: list[str] = []

    def __iter__(self) -> Iterator[str]:
        for line in self._lines:
            self.line_number += 1
            if isinstance(line, _Overlong):
                self.overlong = True
                self._record.append(f"<line {self.line_number} longer than {MAX_LINE_BYTES} bytes omitted>")
                # A bare line end keeps csv.reader's view of lines (and quoted fields) consistent.
                yield "\n"
            else:
                self._record.append(line)
                yield line

    def begin_record(self) -> None:
        self.start = self.line_number + 1
        self.overlong = False
        self._record.clear()

    def rejection(self, reason: str) -> Rejection:
        text = "\n".join(line.rstrip("\r\n") for line in self._record)
        if len(text) > RAW_TEXT_LIMIT:
            text = text[:RAW_TEXT_LIMIT] + "...(truncated)"
        return Rejection(self.start, reason, text)
