"""Table keys for any blob name, and destination names that never overwrite."""

from __future__ import annotations

from datetime import UTC, datetime

from hypothesis import given
from hypothesis import strategies as st

from shared.blob_names import destination_names
from shared.records import KEY_LIMIT, decode_key, encode_key

FORBIDDEN_IN_KEYS = set("/\\#?") | {chr(c) for c in range(0x20)} | {chr(c) for c in range(0x7F, 0xA0)}


@given(st.text(min_size=1, max_size=1024))
def test_any_blob_name_gives_a_valid_key(name: str) -> None:
    key = encode_key(name)
    assert not (set(key) & FORBIDDEN_IN_KEYS)
    assert len(key.encode("utf-8")) <= 1024
    if len(key) <= KEY_LIMIT and "~" not in key:
        assert decode_key(key) == name


def test_long_names_stay_distinct() -> None:
    a, b = "x" * 1000 + "a.csv", "x" * 1000 + "b.csv"
    assert encode_key(a) != encode_key(b)


def test_destination_names_keep_the_name_then_add_a_utc_suffix_before_csv() -> None:
    now = datetime(2025, 10, 22, 7, 41, 42, tzinfo=UTC)
    names = destination_names("exports/bobo.CSV", now)
    assert next(names) == "exports/bobo.CSV"
    assert next(names) == "exports/bobo-20251022T074142Z.CSV"
    assert next(names) == "exports/bobo-20251022T074142Z-1.CSV"
    second = {name: list(destination_names(name, now))[1] for name in ("notes.txt", "README", ".hidden", "v1.2/x")}
    assert second == {
        "notes.txt": "notes-20251022T074142Z.txt",  # before the extension, like .csv
        "README": "README-20251022T074142Z",
        ".hidden": ".hidden-20251022T074142Z",
        "v1.2/x": "v1.2/x-20251022T074142Z",  # a dot in a folder part is not an extension
    }
