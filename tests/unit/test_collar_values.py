"""Collar values as AtHoc returns them (strings, JSON integers, JSON floats) map to one employee id."""

from __future__ import annotations

import pytest

from shared.mapping_sync import collar_text, mappings_from_users

COLLAR = "Collar-Number"


@pytest.mark.parametrize(
    ("raw", "text"),
    [("00123", "00123"), (" 6 ", "6"), (6, "6"), (6.0, "6"), (0.0, "0"), (6.5, "6.5"), (None, "")],
)
def test_collar_text(raw: object, text: str) -> None:
    assert collar_text(raw) == text


def test_a_whole_float_collar_maps_like_its_integer() -> None:
    users = [
        {"LOGIN_ID": "a@x", COLLAR: 5},
        {"login_id": "b@x", "collar-number": 6.0},
        {"LOGIN_ID": "c@x", COLLAR: "007"},
    ]
    wanted = mappings_from_users(users, COLLAR).wanted
    assert sorted(wanted) == ["5", "6", "7"]
    assert wanted["6"].login == "b@x" and wanted["6"].collar == "6"


def test_float_and_string_forms_of_one_id_are_a_conflict_not_two_ids() -> None:
    users = [{"LOGIN_ID": "a@x", COLLAR: "12"}, {"LOGIN_ID": "b@x", COLLAR: 12.0}]
    mappings = mappings_from_users(users, COLLAR)
    assert mappings.wanted == {} and [c.employee_id for c in mappings.conflicts] == ["12"]
