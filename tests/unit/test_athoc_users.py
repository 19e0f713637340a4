"""Reading AtHoc user rows (shared.athoc.users): keys whose casing the server does not promise."""

from __future__ import annotations

from shared.athoc.users import field_value, has_field, login_of, row_fingerprint
from shared.mapping_sync import field_value as mapping_field_value


def test_field_value_prefers_the_exact_key_then_any_casing() -> None:
    row: dict[str, object] = {"collar-number": "7", "Collar-Number": "8", 3: "not a name"}
    assert field_value(row, "Collar-Number") == "8"
    assert field_value({"COLLAR-NUMBER": "9"}, "Collar-Number") == "9"
    assert field_value(row, "Duty") is None
    assert field_value({"Duty": None}, "duty") is None


def test_mapping_sync_reads_rows_with_the_same_function() -> None:
    assert mapping_field_value is field_value


def test_has_field_counts_a_null_value_as_present() -> None:
    assert has_field({"on-duty-dtg": None}, "On-Duty-DTG")
    assert not has_field({"On-Duty": "x"}, "On-Duty-DTG")


def test_login_of_ignores_missing_null_and_blank_logins() -> None:
    assert login_of({"login_id": "alice"}) == "alice"
    assert login_of({"LOGIN_ID": 42}) == "42"
    for row in ({}, {"LOGIN_ID": None}, {"LOGIN_ID": "  "}):
        assert login_of(row) is None


def test_row_fingerprint_uses_user_id_when_there_is_one() -> None:
    assert row_fingerprint({"USER_ID": 7, "Collar-Number": "1"}) == row_fingerprint({"user_id": 7})
    assert row_fingerprint({"Collar-Number": "1"}) != row_fingerprint({"Collar-Number": "2"})
