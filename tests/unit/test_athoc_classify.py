"""Classification of SyncByCommonNames row results (docs/design.md#latest-wins, shared.athoc.rows), table-driven.

A wrong NOT_FOUND or DENIED silently loses an update (the file is confirmed, nobody retries it), so
every text whose subject is not clearly the user must stay an ERROR.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.athoc import RowResult, RowStatus, SyncReport, classify_row
from shared.errors import ErrorKind

LOGIN = "x@y.example"
DUTY = "On-Duty-DTG"


def result_row(status: str | None, details: str, login: str | None = LOGIN) -> dict[str, object]:
    row: dict[str, object] = {DUTY: "17/06/2024 14:30:00", "USER_ID": None, ":SyncDetails": details}
    if login is not None:
        row["LOGIN_ID"] = login
    if status is not None:
        row[":SyncStatus"] = status
    return row


# Texts with the row's login x@y.example in them (classified with the login replaced by a placeholder).
NOT_FOUND_TEXTS = [
    "User: x@y.example does not exists in the Organization",  # captured from a real server
    "User: x@y.example does not exist in the Organization",
    "User not found",
    "user not found",
    "User x@y.example not found",
    "User 'x@y.example' does not exist",
    "User does not exist.",
    "The user could not be found",
    "No user found with LOGIN_ID x@y.example",
    "Cannot find user x@y.example",
    "Unable to find the user",
    "LOGIN_ID x@y.example does not exist",
    "x@y.example not found",
    "X@Y.EXAMPLE not found",  # the login in another case
    "x@y.example does not exist in the organization",
    "Unknown user x@y.example",
    "No such user",
    "No matching user",
    "User x@y.example is not a member of the organization",
]
DENIED_TEXTS = [
    # what the simulator says (the real text is unverified)
    "Access denied: the operator does not have permission to update user x@y.example",
    "Access denied",
    "Permission denied",
    "You do not have permission to update this user",
    "Operator is not authorized to modify user x@y.example",
    "Insufficient privileges to update user",
    "Not permitted",
    "Forbidden",
    "The operator does not have rights to manage this user",
    "You don't have access to this user",
    "The operator does not have access to this user",
]
ERROR_TEXTS = [
    # about an attribute, a value, a format or a date: data or configuration errors, never "expected"
    "Access denied: no permission to update attribute On-Duty-DTG",
    "Permission denied on field 'On-Duty-DTG'",
    "Not authorized to change this value",
    "Attribute 'On-Duty-DTG' does not exist",
    "Invalid value '31/02/2024' for attribute 'On-Duty-DTG'",
    "User attribute 'X' not found",
    "Value not found",
    "User x@y.example: invalid date",
    "Wrong format for user x@y.example",
    "User not found in On-Duty-DTG",  # names the duty field
    "On-Duty-DTG not found",
    # the subject is not clearly this user
    "Users does not exist",
    "Record not found",
    "Not found",
    "User x@y.example: role not found",
    "someone.else@y.example not found",
    "User someone.else@y.example does not exist",
    # both, neither, or a denial not in the known phrasings
    "User: x@y.example not found or access denied",
    "Update denied for user x@y.example",
    "User is outside the operator's management scope",
    "Timeout while saving",
    "",
]


@pytest.mark.parametrize("status", ["Error", "error", "Failed", "Failure"])
@pytest.mark.parametrize(
    ("details", "expected"),
    [(t, RowStatus.NOT_FOUND) for t in NOT_FOUND_TEXTS]
    + [(t, RowStatus.DENIED) for t in DENIED_TEXTS]
    + [(t, RowStatus.ERROR) for t in ERROR_TEXTS],
)
def test_every_non_ok_status_is_judged_by_its_text(status: str, details: str, expected: RowStatus) -> None:
    got, detail = classify_row(result_row(status, details), sent_login=LOGIN, duty_field=DUTY)
    assert got == expected
    if details:
        assert details in detail  # the server's text is kept for the operator


@pytest.mark.parametrize("details", [NOT_FOUND_TEXTS[0], DENIED_TEXTS[1], "Updated"])
def test_partial_and_a_missing_status_are_errors_whatever_the_text(details: str) -> None:
    for status in ("Partial", "partial", None, ""):
        got, detail = classify_row(result_row(status, details), sent_login=LOGIN, duty_field=DUTY)
        assert got == RowStatus.ERROR
        assert details in detail


@pytest.mark.parametrize("status", ["OK", "ok", " Ok "])
def test_only_ok_is_updated(status: str) -> None:
    assert classify_row(result_row(status, "Updated"))[0] == RowStatus.UPDATED


@pytest.mark.parametrize(
    ("sent", "echoed", "details"),
    [
        # Words inside the login ("Field", "Attribute", "Value", "Date") are not read as the text's.
        ("John.Field@X", "john.field@x", "User: John.Field@X does not exists in the Organization"),
        ("John.Field@X", "john.field@x", "User: john.field@x does not exists in the Organization"),
        ("attribute.value@x", "attribute.value@x", "User: ATTRIBUTE.VALUE@X does not exist"),
        ("date.format@x", None, "User date.format@x not found"),  # no echo: the sent login is removed
        ("Alice@X", " alice@x ", "User: ALICE@x does not exists in the Organization"),
    ],
)
def test_logins_are_removed_case_insensitively_before_matching(sent: str, echoed: str | None, details: str) -> None:
    row = result_row("Error", details, login=echoed)
    assert classify_row(row, sent_login=sent, duty_field=DUTY)[0] == RowStatus.NOT_FOUND


def test_a_login_word_is_not_removed_from_an_attribute_text() -> None:
    row = result_row("Error", "Attribute 'user-type' does not exist", login="field.attribute.user@x")
    assert classify_row(row, sent_login="field.attribute.user@x", duty_field=DUTY)[0] == RowStatus.ERROR


def test_the_configured_duty_field_vetoes_whatever_its_name() -> None:
    row = result_row("Error", "Access denied to Duty-Slot for this user")
    assert classify_row(row, sent_login=LOGIN)[0] == RowStatus.DENIED
    assert classify_row(row, sent_login=LOGIN, duty_field="Duty-Slot")[0] == RowStatus.ERROR
    assert classify_row(row, sent_login=LOGIN, duty_field="duty-slot")[0] == RowStatus.ERROR  # any case


# ---------------------------------------------------------------- more texts, and the report


def row(status: str | None, details: str | None, login: str = "john.doe@force.example") -> dict[str, object]:
    result: dict[str, object] = {"LOGIN_ID": login, "On-Duty-DTG": "17/06/2024 14:30:00", "USER_ID": None}
    if status is not None:
        result[":SyncStatus"] = status
    if details is not None:
        result[":SyncDetails"] = details
    return result


@pytest.mark.parametrize(
    ("status", "details", "expected"),
    [
        ("OK", "Updated", RowStatus.UPDATED),
        ("ok", "", RowStatus.UPDATED),
        ("Ok", None, RowStatus.UPDATED),
        ("Error", "User: john.doe@force.example does not exists in the Organization", RowStatus.NOT_FOUND),
        ("Error", "User does not exist", RowStatus.NOT_FOUND),
        ("Error", "user not found", RowStatus.NOT_FOUND),
        ("Error", "Unknown user 'x'", RowStatus.NOT_FOUND),
        ("error", "No such user", RowStatus.NOT_FOUND),
        (
            "Error",
            "Access denied: the operator does not have permission to update user john.doe@force.example",
            RowStatus.DENIED,
        ),
        ("Error", "Operator is not authorized to modify this user", RowStatus.DENIED),
        ("Error", "Forbidden", RowStatus.DENIED),
        ("Error", "You do not have permission", RowStatus.DENIED),
        ("Error", "Attribute 'On-Duty-DTG' does not exist", RowStatus.ERROR),
        ("Error", "Invalid value '31/02/2024' for attribute 'On-Duty-DTG'", RowStatus.ERROR),
        ("Error", "User attribute 'X' not found", RowStatus.ERROR),  # about an attribute, not the user
        ("Error", "Permission denied on field 'On-Duty-DTG'", RowStatus.ERROR),
        ("Error", "", RowStatus.ERROR),
        ("Error", "Timeout while saving", RowStatus.ERROR),
        ("Partial", "User does not exist", RowStatus.ERROR),
        ("Partial", "Attribute 'X' does not exist", RowStatus.ERROR),
        ("Skipped", "Access denied", RowStatus.DENIED),  # any status but OK and Partial reads like Error
        (None, "Updated", RowStatus.ERROR),
        ("", "", RowStatus.ERROR),
    ],
)
def test_classify_row(status: str | None, details: str | None, expected: RowStatus) -> None:
    got, detail = classify_row(row(status, details))
    assert got == expected
    if expected == RowStatus.ERROR and details:
        assert details in detail  # the server's text is kept for the operator


def test_classify_row_ignores_words_inside_the_login() -> None:
    login = "field.attribute.user@force.example"
    assert classify_row(row("Error", f"User: {login} does not exists in the Organization", login))[0] == (
        RowStatus.NOT_FOUND
    )
    assert classify_row(row("Error", "Attribute 'user-type' does not exist", login))[0] == RowStatus.ERROR


def test_classify_row_reads_keys_case_insensitively() -> None:
    assert classify_row({"LOGIN_ID": "a", ":syncstatus": "OK", ":syncdetails": "Updated"})[0] == RowStatus.UPDATED


@given(st.dictionaries(st.text(max_size=12), st.one_of(st.none(), st.text(max_size=40), st.integers())))
def test_classify_row_never_raises_and_only_ok_is_updated(candidate: dict[str, object]) -> None:
    status, detail = classify_row(candidate)
    assert isinstance(detail, str)
    raw = next((v for k, v in candidate.items() if k.casefold() == ":syncstatus"), None)
    if status == RowStatus.UPDATED:
        assert str(raw).strip().casefold() == "ok"


def test_by_status_counts_every_status() -> None:
    report = SyncReport(
        rows=[
            RowResult("a", "x", RowStatus.UPDATED, "Updated"),
            RowResult("b", "", RowStatus.UPDATED, "Updated"),
            RowResult("c", "x", RowStatus.FAILED, "503", transient=True, kind=ErrorKind.SERVER),
        ],
        requests=1,
    )
    counts = report.by_status()
    assert counts[RowStatus.UPDATED] == 2 and counts[RowStatus.FAILED] == 1
    assert counts[RowStatus.MISSING] == 0 and set(counts) == set(RowStatus)
