"""Reading BOBO CSV files (docs/design.md#input-format): forms, rejections, encodings, streaming, rejects file."""

from __future__ import annotations

import csv
import io
import itertools
import tracemalloc
from collections.abc import Iterator
from datetime import datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.bobo_csv import (
    MAX_LINE_BYTES,
    Action,
    DutyEvent,
    Rejection,
    UnreadableFile,
    normalise_employee_id,
    read_bobo_csv,
    rejects_csv,
)

HEADER_10 = (
    "Transaction_Type,Employee_ID,Payroll_ID,Clocking_Date,Clocking_Time,DateTime_Created,"
    "Geo_Status,Latitude,Longitude,Accuracy"
)


def row(
    kind: str = "BON",
    employee: str = "00123",
    payroll: str = "48213",
    date: str = "20251022",
    time: str = "074142",
    created: str = "20251022074142",
    geo: tuple[str, str, str, str] = ("3", "51.501", "-0.141", "12.5"),
) -> str:
    return ",".join((kind, employee, payroll, date, time, created, *geo))


def parse(text: str | bytes, chunk_size: int | None = None) -> list[DutyEvent | Rejection]:
    data = text.encode("utf-8") if isinstance(text, str) else text
    if chunk_size is None:
        return list(read_bobo_csv([data]))
    return list(read_bobo_csv(data[i : i + chunk_size] for i in range(0, len(data), chunk_size)))


def only_events(items: list[DutyEvent | Rejection]) -> list[DutyEvent]:
    assert all(isinstance(item, DutyEvent) for item in items), items
    return [item for item in items if isinstance(item, DutyEvent)]


def only_rejections(items: list[DutyEvent | Rejection]) -> list[Rejection]:
    assert all(isinstance(item, Rejection) for item in items), items
    return [item for item in items if isinstance(item, Rejection)]


# --- the 10-column form ---------------------------------------------------------------------------


def test_contract_sample_becomes_two_events() -> None:
    items = parse(
        "BON,00123,48213,20251022,074142,20251022074142,3,51.501,-0.141,12.5\n"
        "BOF,04711,77120,20251022,074155,20251022074155,0,0,0,0\n"
    )
    assert items == [
        DutyEvent(
            1, "123", "00123", Action.BOOK_ON, datetime(2025, 10, 22, 7, 41, 42), datetime(2025, 10, 22, 7, 41, 42)
        ),
        DutyEvent(
            2, "4711", "04711", Action.BOOK_OFF, datetime(2025, 10, 22, 7, 41, 55), datetime(2025, 10, 22, 7, 41, 55)
        ),
    ]


@pytest.mark.parametrize(
    ("kind", "action"),
    [("BON", Action.BOOK_ON), (" bon ", Action.BOOK_ON), ("Bon", Action.BOOK_ON), ("\tBOF", Action.BOOK_OFF)],
)
def test_transaction_type_any_case_trimmed(kind: str, action: Action) -> None:
    (event,) = only_events(parse(row(kind=kind)))
    assert event.action is action


def test_whitespace_around_every_field_is_trimmed() -> None:
    text = " BOF , 00042 , x , 20250101 , 235959 , 20250102000000 , a , b , c , d "
    (event,) = only_events(parse(text))
    assert (event.employee_id, event.raw_employee_id) == ("42", "00042")
    assert event.event_time == datetime(2025, 1, 1, 23, 59, 59)
    assert event.created == datetime(2025, 1, 2)


@pytest.mark.parametrize(
    ("raw", "normalised"),
    [
        ("00123", "123"),
        ("123", "123"),
        ("  0042 ", "42"),
        ("000", "0"),
        ("0", "0"),
        ("", ""),
        ("  ", ""),
        ("A01", "A01"),
    ],
)
def test_normalise_employee_id(raw: str, normalised: str) -> None:
    assert normalise_employee_id(raw) == normalised


@pytest.mark.parametrize("count", [1, 9, 11, 12])
def test_wrong_column_count_is_rejected(count: int) -> None:
    fields = row().split(",")
    fields = (fields * 2)[:count]
    (rejection,) = only_rejections(parse(",".join(fields)))
    assert rejection.reason == f"expected 10 columns, found {count}"
    assert rejection.row_number == 1
    assert rejection.raw_text == ",".join(fields)


@pytest.mark.parametrize("kind", ["XYZ", "", "BO", "BONN", "ON"])
def test_unknown_transaction_type_is_rejected(kind: str) -> None:
    (rejection,) = only_rejections(parse(row(kind=kind)))
    assert rejection.reason == f"unknown transaction type {kind!r}"


@pytest.mark.parametrize("employee", ["", "   ", '""'])
def test_empty_employee_id_is_rejected(employee: str) -> None:
    (rejection,) = only_rejections(parse(row(employee=employee)))
    assert rejection.reason == "empty employee id"


@pytest.mark.parametrize(
    "date", ["20251340", "20250230", "20230229", "20250001", "2025102", "202510221", "2025-10-22", "", "2025102x"]
)
def test_invalid_clocking_date_is_rejected(date: str) -> None:
    (rejection,) = only_rejections(parse(row(date=date)))
    assert rejection.reason == f"invalid Clocking_Date {date!r}"


@pytest.mark.parametrize("time", ["256100", "246000", "240000", "076000", "075960", "07414", "0741420", "07:41", ""])
def test_invalid_clocking_time_is_rejected(time: str) -> None:
    (rejection,) = only_rejections(parse(row(time=time)))
    assert rejection.reason == f"invalid Clocking_Time {time!r}"


@pytest.mark.parametrize("created", ["2025102207414", "20251022256100", "20250230074142", "x", "2025-10-22 07:41:42"])
def test_invalid_datetime_created_is_rejected(created: str) -> None:
    (rejection,) = only_rejections(parse(row(created=created)))
    assert rejection.reason == f"invalid DateTime_Created {created!r}"


@pytest.mark.parametrize("created", ["", "   "])
def test_an_empty_datetime_created_is_absent_not_invalid(created: str) -> None:
    (event,) = parse(row(created=created))
    assert isinstance(event, DutyEvent)
    assert event.created is None and event.event_time == datetime(2025, 10, 22, 7, 41, 42)


def test_non_ascii_digits_are_not_a_date() -> None:
    fullwidth = "２０２５１０２２"  # str.isdigit() says True; the format says ASCII digits
    (rejection,) = only_rejections(parse(row(date=fullwidth)))
    assert "invalid Clocking_Date" in rejection.reason


def test_leap_day_and_day_edges_are_valid() -> None:
    events = only_events(parse(row(date="20240229", time="000000") + "\n" + row(date="20241231", time="235959")))
    assert [event.event_time for event in events] == [datetime(2024, 2, 29), datetime(2024, 12, 31, 23, 59, 59)]


def test_every_problem_of_a_row_is_named() -> None:
    (rejection,) = only_rejections(parse(row(kind="XYZ", employee="", date="20251340", time="256100", created="x")))
    assert rejection.reason == (
        "unknown transaction type 'XYZ'; empty employee id; invalid Clocking_Date '20251340'; "
        "invalid Clocking_Time '256100'; invalid DateTime_Created 'x'"
    )


def test_row_of_only_commas_is_a_rejected_data_row() -> None:
    (rejection,) = only_rejections(parse(",,,,,,,,,\n"))
    assert rejection.reason.startswith("unknown transaction type ''; empty employee id")


def test_rejected_rows_do_not_stop_the_file() -> None:
    items = parse("\n".join([row(kind="XYZ"), row(employee="1"), row(date="bad"), row(employee="2")]))
    assert [type(item).__name__ for item in items] == ["Rejection", "DutyEvent", "Rejection", "DutyEvent"]
    assert [item.row_number for item in items] == [1, 2, 3, 4]


@given(
    st.lists(
        st.text(max_size=30),
        min_size=4,
        max_size=4,
    )
)
def test_geo_columns_never_cause_a_rejection(geo: list[str]) -> None:
    out = io.StringIO()
    csv.writer(out).writerow(row().split(",")[:6] + geo)
    (event,) = only_events(parse(out.getvalue()))
    assert event.employee_id == "123"


# --- headers and the simple form -----------------------------------------------------------------


@pytest.mark.parametrize(
    "header",
    [
        HEADER_10,
        HEADER_10.upper(),
        HEADER_10.lower(),
        " " + HEADER_10.replace(",", " , ") + " ",
        '"Transaction_Type"' + HEADER_10[16:],
    ],
)
def test_ten_column_header_is_neither_data_nor_rejected(header: str) -> None:
    items = parse(header + "\r\n" + row() + "\r\n")
    (event,) = only_events(items)
    assert event.row_number == 2


def test_header_only_and_empty_files_yield_nothing() -> None:
    assert parse(b"") == []
    assert parse(HEADER_10) == []
    assert parse(HEADER_10 + "\n\n  \n") == []
    assert parse("Employee_ID,Status,Timestamp\n") == []
    assert parse("\n\r\n   \n\t\n") == []
    assert parse(b"\xef\xbb\xbf") == []


def test_simple_form() -> None:
    items = parse(
        "employee_id , STATUS,Timestamp\n"
        "00123,On Duty,2025-10-22 07:41:42\n"
        "\n"
        "4711, off duty ,2025-10-22 07:41:55\n"
        "7,ON  DUTY,2024-02-29 23:59:59\n"
    )
    assert items == [
        DutyEvent(2, "123", "00123", Action.BOOK_ON, datetime(2025, 10, 22, 7, 41, 42), None),
        DutyEvent(4, "4711", "4711", Action.BOOK_OFF, datetime(2025, 10, 22, 7, 41, 55), None),
        DutyEvent(5, "7", "7", Action.BOOK_ON, datetime(2024, 2, 29, 23, 59, 59), None),
    ]


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("1,On Duty", "expected 3 columns, found 2"),
        (row(), "expected 3 columns, found 10"),
        ("1,Maybe,2025-10-22 07:41:42", "unknown status 'Maybe' (expected On Duty or Off Duty)"),
        ("1,BON,2025-10-22 07:41:42", "unknown status 'BON' (expected On Duty or Off Duty)"),
        (" ,On Duty,2025-10-22 07:41:42", "empty employee id"),
        ("1,On Duty,2025-02-30 07:41:42", "invalid Timestamp '2025-02-30 07:41:42' (expected YYYY-MM-DD HH:MM:SS)"),
        ("1,On Duty,2025-10-22T07:41:42", "invalid Timestamp '2025-10-22T07:41:42' (expected YYYY-MM-DD HH:MM:SS)"),
        ("1,On Duty,22/10/2025 07:41", "invalid Timestamp '22/10/2025 07:41' (expected YYYY-MM-DD HH:MM:SS)"),
    ],
)
def test_simple_form_rejections(line: str, reason: str) -> None:
    (rejection,) = only_rejections(parse("Employee_ID,Status,Timestamp\n" + line))
    assert (rejection.row_number, rejection.reason) == (2, reason)


def test_unknown_header_is_judged_as_a_ten_column_row() -> None:
    items = parse("Type,Employee,When\n" + row())
    assert isinstance(items[0], Rejection)
    assert (items[0].row_number, items[0].reason) == (1, "expected 10 columns, found 3")
    assert isinstance(items[1], DutyEvent)


def test_repeated_header_of_concatenated_files_is_skipped() -> None:
    items = parse("\n".join([HEADER_10, row(employee="1"), HEADER_10.lower(), row(employee="2")]))
    assert [(event.row_number, event.employee_id) for event in only_events(items)] == [(2, "1"), (4, "2")]


def test_header_detection_waits_for_first_non_blank_row() -> None:
    items = parse("\n  \r\nEmployee_ID,Status,Timestamp\n1,On Duty,2025-10-22 07:41:42\n")
    (event,) = only_events(items)
    assert event.row_number == 4


# --- row numbers, line endings, quoting ----------------------------------------------------------


def test_row_numbers_count_header_and_blank_lines() -> None:
    text = HEADER_10 + "\r\n\r\n" + row(employee="1") + "\n   \n\n" + row(kind="X") + "\r\n" + row(employee="3")
    items = parse(text)
    assert [item.row_number for item in items] == [3, 6, 7]


def test_lf_crlf_mixed_and_no_final_newline() -> None:
    for ending in ("\n", "\r\n"):
        events = only_events(parse(ending.join([row(employee="1"), row(employee="2")])))
        assert [event.employee_id for event in events] == ["1", "2"]
    events = only_events(parse(row(employee="1") + "\r\n" + row(employee="2") + "\n" + row(employee="3") + "\r\n"))
    assert [event.employee_id for event in events] == ["1", "2", "3"]


def test_quoted_fields_with_commas() -> None:
    text = '"BON","00123","48,213","20251022","074142","20251022074142","3","51,501","-0,141","12,5"'
    (event,) = only_events(parse(text))
    assert (event.employee_id, event.event_time) == ("123", datetime(2025, 10, 22, 7, 41, 42))


def test_quoted_field_spanning_lines_numbers_the_record_by_its_first_line() -> None:
    text = row(employee="1") + '\nBON,2,x,20251022,074142,20251022074142,"multi\r\nline\nnote",,,\n' + row(employee="3")
    items = parse(text)
    assert [(item.row_number, item.employee_id) for item in only_events(items)] == [(1, "1"), (2, "2"), (5, "3")]


def test_bare_carriage_return_rejects_only_its_record() -> None:
    items = parse(row(employee="1") + "\n" + row(employee="2") + "\r" + row(employee="3") + "\n" + row(employee="4"))
    assert isinstance(items[1], Rejection)
    assert items[1].row_number == 2
    assert items[1].reason.startswith("unreadable CSV record")
    assert [item.employee_id for item in items if isinstance(item, DutyEvent)] == ["1", "4"]


def test_overlong_line_is_rejected_without_buffering_it() -> None:
    long_line = "BON," + "9" * (MAX_LINE_BYTES + 10)
    for chunk_size in (None, 1000, 65536):
        items = parse(row(employee="1") + "\n" + long_line + "\n" + row(employee="3"), chunk_size)
        assert [type(item).__name__ for item in items] == ["DutyEvent", "Rejection", "DutyEvent"]
        rejection = items[1]
        assert isinstance(rejection, Rejection)
        assert rejection.row_number == 2
        assert rejection.reason == f"line longer than {MAX_LINE_BYTES} bytes"
        assert len(rejection.raw_text) < 100
        assert items[2].row_number == 3


def test_line_of_exactly_the_limit_is_read() -> None:
    line = row(geo=("", "", "", "x" * (MAX_LINE_BYTES - len(row(geo=("", "", "", ""))))))
    assert len(line.encode()) == MAX_LINE_BYTES
    assert len(only_events(parse(line + "\n", 4096))) == 1


# --- encodings ------------------------------------------------------------------------------------


def test_utf8_bom_is_dropped_before_header_detection() -> None:
    items = parse(b"\xef\xbb\xbf" + HEADER_10.encode() + b"\r\n" + row().encode())
    (event,) = only_events(items)
    assert event.row_number == 2
    items = parse(b"\xef\xbb\xbf" + row().encode(), chunk_size=1)
    assert only_events(items)[0].action is Action.BOOK_ON


def test_utf8_text_is_decoded_as_utf8() -> None:
    (rejection,) = only_rejections(parse(row(kind="BÖN").encode("utf-8")))
    assert "BÖN" in rejection.raw_text


def test_cp1252_file_with_accents_in_geo_column() -> None:
    text = "\r\n".join(
        [
            row(employee="1"),
            row(employee="2", geo=("café", "£12", "", "")),
            row(kind="Bé", employee="3"),
            row(employee="4", geo=("naïve", "", "", "€")),
        ]
    )
    items = parse(text.encode("cp1252"))
    assert [item.row_number for item in items] == [1, 2, 3, 4]
    assert [item.employee_id for item in items if isinstance(item, DutyEvent)] == ["1", "2", "4"]
    rejection = items[2]
    assert isinstance(rejection, Rejection)
    assert rejection.reason == "unknown transaction type 'Bé'"
    assert rejection.raw_text == row(kind="Bé", employee="3")


def test_cp1252_undefined_bytes_become_replacement_characters() -> None:
    (rejection,) = only_rejections(parse(b"B\x81N" + row().encode()[3:]))
    assert rejection.raw_text.startswith("B\ufffdN,")


@pytest.mark.parametrize("bom", [b"\xff\xfe", b"\xfe\xff", b"\xff\xfe\x00\x00", b"\x00\x00\xfe\xff"])
def test_utf16_and_utf32_files_are_unreadable_before_any_item(bom: bytes) -> None:
    data = bom + row().encode("utf-16-le")
    items = read_bobo_csv(data[i : i + 3] for i in range(0, len(data), 3))
    with pytest.raises(UnreadableFile, match="UTF-16"):
        next(items)


# --- streaming --------------------------------------------------------------------------------------

_LINE_CHOICES = st.sampled_from(
    [
        row(employee="00001").encode(),
        row(kind=" bof ", employee="2", date="20240229").encode(),
        row(kind="XYZ").encode(),
        row(date="20250230").encode(),
        b"BON,1,2",
        b"",
        b"   ",
        b",,,,,,,,,",
        HEADER_10.encode(),
        b"Employee_ID,Status,Timestamp",
        b"00123,On Duty,2025-10-22 07:41:42",
        row(geo=("caf\xc3\xa9", "\xe2\x82\xac", "", "")).encode(),  # UTF-8 é and €
        row(geo=("caf\xe9", "\xa3", "\x81", "")).encode(),  # cp1252 é, £ and an undefined byte
        b'BON,5,"4,8",20251022,074142,20251022074142,"a\r\nb",,,',
        b'BON,6,"unterminated',
        b"x\ry",
        b"9" * (MAX_LINE_BYTES - 1),
        b"9" * (MAX_LINE_BYTES + 1),
    ]
)


@st.composite
def csv_files(draw: st.DrawFn) -> bytes:
    lines = draw(st.lists(_LINE_CHOICES, max_size=12))
    endings = draw(st.lists(st.sampled_from([b"\n", b"\r\n"]), min_size=len(lines), max_size=len(lines)))
    body = b"".join(line + ending for line, ending in zip(lines, endings, strict=True))
    if body and draw(st.booleans()):
        body = body[: -len(endings[-1])]  # no final line end
    return (b"\xef\xbb\xbf" if draw(st.booleans()) else b"") + body


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(csv_files(), st.data())
def test_any_split_into_chunks_gives_the_same_result(data: bytes, draw: st.DataObject) -> None:
    cuts = sorted(draw.draw(st.lists(st.integers(0, len(data)), max_size=20)))
    bounds = [0, *cuts, len(data)]
    chunks = [data[start:end] for start, end in itertools.pairwise(bounds)]
    assert list(read_bobo_csv(chunks)) == list(read_bobo_csv([data]))


@settings(max_examples=30, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(csv_files().filter(lambda data: len(data) < 4000))
def test_one_byte_chunks_give_the_same_result(data: bytes) -> None:
    assert list(read_bobo_csv([data[i : i + 1] for i in range(len(data))])) == list(read_bobo_csv([data]))


def test_input_is_consumed_lazily() -> None:
    pulled = []

    def chunks() -> Iterator[bytes]:
        for number in range(1, 1000):
            pulled.append(number)
            yield (row(employee=str(number)) + "\n").encode()

    items = read_bobo_csv(chunks())
    first = next(items)
    assert isinstance(first, DutyEvent) and first.employee_id == "1"
    assert len(pulled) <= 3


# --- round trip of generated valid rows ---------------------------------------------------------

_MOMENTS = st.datetimes(min_value=datetime(1990, 1, 1), max_value=datetime(2099, 12, 31, 23, 59, 59)).map(
    lambda moment: moment.replace(microsecond=0)
)


# Free text for ignored columns. No bare CR: csv.writer leaves it unquoted when the line terminator is
# LF, which is not RFC 4180 (the parser's handling of a bare CR has its own test).
_FREE_TEXT = st.text(st.characters(codec="utf-8", exclude_characters="\r"), max_size=10)


@st.composite
def valid_rows(draw: st.DrawFn) -> tuple[list[str], Action, str, datetime, datetime]:
    action = draw(st.sampled_from(Action))
    kind = draw(st.sampled_from([action.value, action.value.lower(), action.value.title()]))
    digits = draw(st.text("0123456789", min_size=1, max_size=8))
    employee = draw(st.sampled_from(["", "0", "00"])) + digits
    event_time = draw(_MOMENTS)
    created = event_time + timedelta(seconds=draw(st.integers(0, 2 * 86400)))
    pad = st.sampled_from(["", " ", "  ", "\t"])
    fields = [
        draw(pad) + kind + draw(pad),
        draw(pad) + employee + draw(pad),
        draw(_FREE_TEXT),
        event_time.strftime("%Y%m%d"),
        event_time.strftime("%H%M%S"),
        created.strftime("%Y%m%d%H%M%S"),
        *draw(st.lists(_FREE_TEXT, min_size=4, max_size=4)),
    ]
    return fields, action, employee, event_time, created


class _QuoteAll(csv.excel):
    quoting = csv.QUOTE_ALL


@settings(max_examples=200)
@given(
    st.lists(valid_rows(), min_size=1, max_size=20),
    st.booleans(),
    st.sampled_from(["\n", "\r\n"]),
    st.booleans(),
)
def test_generated_valid_rows_round_trip(
    rows: list[tuple[list[str], Action, str, datetime, datetime]], header: bool, ending: str, quote_all: bool
) -> None:
    dialect = _QuoteAll if quote_all else csv.excel
    out = io.StringIO()
    writer = csv.writer(out, dialect, lineterminator=ending)
    if header:
        writer.writerow(HEADER_10.split(","))
    for fields, *_ in rows:
        writer.writerow(fields)
    items = parse(out.getvalue())
    # Quoted fields may span lines, so the expected row number is the line where each record starts.
    expected_numbers, line = [], 2 if header else 1
    for fields, *_ in rows:
        expected_numbers.append(line)
        probe = io.StringIO()
        csv.writer(probe, dialect, lineterminator=ending).writerow(fields)
        line += probe.getvalue().count("\n")
    assert items == [
        DutyEvent(number, employee.strip().lstrip("0") or "0", employee.strip(), action, event_time, created)
        for number, (_, action, employee, event_time, created) in zip(expected_numbers, rows, strict=True)
    ]


# --- memory -------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_streaming_a_20_mb_file_keeps_memory_far_below_its_size() -> None:
    # Rows of about 300 bytes (a long free-text geo column) keep tracemalloc's per-allocation cost down;
    # 70,000 rows still expose anything kept per row.
    block = "".join(
        row(
            kind="BON" if n % 2 else "BOF",
            employee=f"{n % 5000:05d}",
            time=f"07{n % 60:02d}{n % 60:02d}",
            geo=(f"status {n} " + "x" * 200, "51.501", "-0.141", "12.5"),
        )
        + "\r\n"
        for n in range(300)
    ).encode()
    repeats = 20 * 1024 * 1024 // len(block) + 1
    chunk_size = 64 * 1024

    def chunks() -> Iterator[bytes]:
        # The same block over and over: the test itself allocates nothing per chunk but the slice.
        for _ in range(repeats):
            for start in range(0, len(block), chunk_size):
                yield block[start : start + chunk_size]

    tracemalloc.start()
    try:
        count = sum(1 for item in read_bobo_csv(chunks()) if isinstance(item, DutyEvent))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert count == 300 * repeats
    assert len(block) * repeats >= 20 * 1024 * 1024
    assert peak < 5 * 1024 * 1024, f"peak {peak} bytes"


# --- the rejects file -----------------------------------------------------------------------------


def test_rejects_csv_layout_and_round_trip() -> None:
    rejections = [
        Rejection(3, "expected 10 columns, found 2", 'BON,"a,b"'),
        Rejection(7, "unknown transaction type 'é'", "é,1\nsecond line"),
    ]
    data = rejects_csv(rejections)
    assert data.startswith(b"row_number,reason,raw_text\r\n")
    read_back = list(csv.reader(io.StringIO(data.decode("utf-8"), newline="")))
    assert read_back == [
        ["row_number", "reason", "raw_text"],
        ["3", "expected 10 columns, found 2", 'BON,"a,b"'],
        ["7", "unknown transaction type 'é'", "é,1\nsecond line"],
    ]


def test_rejects_csv_with_no_rejection_is_only_the_header() -> None:
    assert rejects_csv([]) == b"row_number,reason,raw_text\r\n"


@pytest.mark.parametrize("start", ["=", "+", "-", "@", "\t", "\r", " =", "  @"])
def test_rejects_csv_defuses_formulas(start: str) -> None:
    dangerous = start + 'HYPERLINK("http://x")'
    data = rejects_csv([Rejection(1, dangerous, dangerous)])
    (_, (_, reason, raw_text)) = list(csv.reader(io.StringIO(data.decode("utf-8"), newline="")))
    assert reason == "'" + dangerous
    assert raw_text == "'" + dangerous


@pytest.mark.parametrize("text", ["BON,1", "unknown transaction type '=X'", "", "'already", "1-2"])
def test_rejects_csv_leaves_harmless_text_alone(text: str) -> None:
    data = rejects_csv([Rejection(1, text, text)])
    (_, (_, reason, raw_text)) = list(csv.reader(io.StringIO(data.decode("utf-8"), newline="")))
    assert (reason, raw_text) == (text, text)


def test_rejects_csv_of_parser_output() -> None:
    rejections = only_rejections(parse("=cmd|' /C calc'!A0,1,2\n-1,2,3"))
    read_back = list(csv.reader(io.StringIO(rejects_csv(rejections).decode("utf-8"), newline="")))
    assert [cells[0] for cells in read_back[1:]] == ["1", "2"]
    assert all(cells[2].startswith("'") for cells in read_back[1:])
