"""Tests of the AtHoc simulator itself (tools/athoc_sim.py), through real HTTP with requests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from tools.athoc_sim import OMIT_LOGIN, AtHocSimulator, demo_users

ROOT = Path(__file__).resolve().parents[2]
TOKEN_PATH = "/AuthServices/Auth/connect/token"
DISCOVERY_PATH = "/AuthServices/Auth/.well-known/openid-configuration"
SEARCH_PATH = "/api/v2/orgs/DEMO/users/search/basic"
SYNC_PATH = "/api/v2/orgs/DEMO/users/SyncByCommonNames"
DUTY = "On-Duty-DTG"
COLLAR = "Collar-Number"
WHEN = "17/06/2024 14:30:00"
TIMEOUT = 10


@pytest.fixture
def sim() -> Iterator[AtHocSimulator]:
    with AtHocSimulator() as simulator:
        yield simulator


def token_form(**overrides: str | None) -> dict[str, str]:
    form = {
        "grant_type": "password",
        "client_id": "bobo-sync",
        "client_secret": "sim-client-secret",
        "username": "svc-bobo",
        "password": "sim-password",
        "acr_values": "tenant:DEMO",
        "scope": "openid profile athoc.iws.web.api",
    }
    form.update(overrides)
    return {k: v for k, v in form.items() if v is not None}


def get_token(sim: AtHocSimulator, **overrides: str | None) -> dict[str, Any]:
    response = requests.post(sim.url + TOKEN_PATH, data=token_form(**overrides), timeout=TIMEOUT)
    assert response.status_code == 200, response.text
    return response.json()


@pytest.fixture
def api(sim: AtHocSimulator) -> Iterator[requests.Session]:
    """A session carrying a valid bearer token."""
    session = requests.Session()
    session.headers["Authorization"] = "Bearer " + get_token(sim)["access_token"]
    yield session
    session.close()


def search(session: requests.Session, sim: AtHocSimulator, **params: Any) -> requests.Response:
    return session.get(sim.url + SEARCH_PATH, params=params, timeout=TIMEOUT)


def sync(
    session: requests.Session,
    sim: AtHocSimulator,
    rows: Any,
    query: str = "?syncExistingUsersOnly=true",
    headers: dict[str, str] | None = None,
) -> requests.Response:
    return session.post(sim.url + SYNC_PATH + query, json=rows, headers=headers, timeout=TIMEOUT)


# --- discovery and tokens --------------------------------------------------------------------------


def test_discovery_document(sim: AtHocSimulator) -> None:
    response = requests.get(sim.url + DISCOVERY_PATH.lower(), timeout=TIMEOUT)  # path is case-insensitive
    assert response.status_code == 200
    doc = response.json()
    assert doc["token_endpoint"] == sim.url + TOKEN_PATH
    assert doc["issuer"] == sim.url + "/AuthServices/Auth"
    assert {"password", "refresh_token"} <= set(doc["grant_types_supported"])
    assert {"openid", "profile", "athoc.iws.web.api", "offline_access"} <= set(doc["scopes_supported"])
    assert sim.count("discovery") == 1


def test_token_without_offline_access_has_no_refresh_token(sim: AtHocSimulator) -> None:
    tokens = get_token(sim)
    assert tokens["token_type"] == "Bearer"
    assert tokens["expires_in"] == 3600
    assert tokens["access_token"]
    assert tokens["scope"] == "openid profile athoc.iws.web.api"
    assert "refresh_token" not in tokens


def test_token_with_offline_access_has_refresh_token(sim: AtHocSimulator) -> None:
    first = get_token(sim, scope="openid profile athoc.iws.web.api offline_access")
    second = get_token(sim, scope="athoc.iws.web.api offline_access")
    assert first["refresh_token"] and second["refresh_token"]
    assert first["access_token"] != second["access_token"]


@pytest.mark.parametrize(
    ("overrides", "error", "description"),
    [
        ({"client_secret": "wrong"}, "invalid_client", None),
        ({"client_id": "someone-else"}, "invalid_client", None),
        ({"password": "wrong"}, "invalid_grant", "invalid_username_or_password"),
        ({"username": "nobody"}, "invalid_grant", "invalid_username_or_password"),
        ({"acr_values": "tenant:OTHER"}, "invalid_grant", "invalid tenant"),
        ({"acr_values": "DEMO"}, "invalid_grant", "invalid tenant"),
        ({"scope": "openid profile athoc.iws.web.api admin"}, "invalid_scope", None),
        ({"scope": "openid profile"}, "invalid_scope", None),
        ({"grant_type": "client_credentials"}, "unsupported_grant_type", None),
        ({"grant_type": None}, "invalid_request", None),
        ({"client_id": None}, "invalid_request", None),
        ({"username": None}, "invalid_request", None),
        ({"password": None}, "invalid_request", None),
        ({"acr_values": None}, "invalid_request", None),
        ({"scope": None}, "invalid_request", None),
    ],
)
def test_token_errors(
    sim: AtHocSimulator, overrides: dict[str, str | None], error: str, description: str | None
) -> None:
    response = requests.post(sim.url + TOKEN_PATH, data=token_form(**overrides), timeout=TIMEOUT)
    assert response.status_code == 400
    assert response.json()["error"] == error
    if description is not None:
        assert response.json()["error_description"] == description


def test_token_request_needs_a_form_body(sim: AtHocSimulator) -> None:
    response = requests.post(sim.url + TOKEN_PATH, json=token_form(), timeout=TIMEOUT)
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"


def test_token_accepts_http_basic_client_authentication(sim: AtHocSimulator) -> None:
    form = token_form(client_id=None, client_secret=None)
    ok = requests.post(sim.url + TOKEN_PATH, data=form, auth=("bobo-sync", "sim-client-secret"), timeout=TIMEOUT)
    bad = requests.post(sim.url + TOKEN_PATH, data=form, auth=("bobo-sync", "nope"), timeout=TIMEOUT)
    assert ok.status_code == 200 and ok.json()["access_token"]
    assert bad.status_code == 400 and bad.json()["error"] == "invalid_client"


def test_token_log_redacts_secrets(sim: AtHocSimulator) -> None:
    get_token(sim)
    (entry,) = sim.requests
    assert entry.kind == "token" and entry.method == "POST" and entry.status == 200
    assert entry.body["password"] == "***"
    assert entry.body["client_secret"] == "***"
    assert entry.body["username"] == "svc-bobo"
    assert "sim-password" not in repr(entry) and "sim-client-secret" not in repr(entry)


def test_refresh_grant_issues_new_tokens_and_rotates(sim: AtHocSimulator) -> None:
    sim.add_user("a@x", collar="1")
    tokens = get_token(sim, scope="openid athoc.iws.web.api offline_access")
    form = {
        "grant_type": "refresh_token",
        "client_id": "bobo-sync",
        "client_secret": "sim-client-secret",
        "refresh_token": tokens["refresh_token"],
    }
    refreshed = requests.post(sim.url + TOKEN_PATH, data=form, timeout=TIMEOUT)
    assert refreshed.status_code == 200
    new = refreshed.json()
    assert new["access_token"] != tokens["access_token"]
    assert new["refresh_token"] != tokens["refresh_token"]
    assert new["scope"] == "openid athoc.iws.web.api offline_access"
    headers = {"Authorization": "Bearer " + new["access_token"]}
    assert requests.get(sim.url + SEARCH_PATH, headers=headers, timeout=TIMEOUT).status_code == 200
    # The used refresh token is gone (one-time use); a wrong client cannot refresh either.
    again = requests.post(sim.url + TOKEN_PATH, data=form, timeout=TIMEOUT)
    assert again.status_code == 400 and again.json()["error"] == "invalid_grant"
    wrong_client = dict(form, refresh_token=new["refresh_token"], client_secret="nope")
    assert requests.post(sim.url + TOKEN_PATH, data=wrong_client, timeout=TIMEOUT).json()["error"] == "invalid_client"
    missing = dict(form)
    del missing["refresh_token"]
    assert requests.post(sim.url + TOKEN_PATH, data=missing, timeout=TIMEOUT).json()["error"] == "invalid_request"


def test_access_token_expires() -> None:
    with AtHocSimulator(expires_in=1) as short:
        tokens = get_token(short)
        assert tokens["expires_in"] == 1
        headers = {"Authorization": "Bearer " + tokens["access_token"]}
        assert requests.get(short.url + SEARCH_PATH, headers=headers, timeout=TIMEOUT).status_code == 200
        time.sleep(1.2)
        expired = requests.get(short.url + SEARCH_PATH, headers=headers, timeout=TIMEOUT)
        assert expired.status_code == 401
        assert expired.headers["WWW-Authenticate"].startswith("Bearer")


def test_revoke_tokens_invalidates_access_and_refresh_tokens(sim: AtHocSimulator) -> None:
    tokens = get_token(sim, scope="openid athoc.iws.web.api offline_access")
    headers = {"Authorization": "Bearer " + tokens["access_token"]}
    assert requests.get(sim.url + SEARCH_PATH, headers=headers, timeout=TIMEOUT).status_code == 200
    sim.revoke_tokens()
    assert requests.get(sim.url + SEARCH_PATH, headers=headers, timeout=TIMEOUT).status_code == 401
    assert requests.post(sim.url + SYNC_PATH, headers=headers, json=[], timeout=TIMEOUT).status_code == 401
    form = token_form(grant_type="refresh_token", refresh_token=tokens["refresh_token"])
    refreshed = requests.post(sim.url + TOKEN_PATH, data=form, timeout=TIMEOUT)
    assert refreshed.status_code == 400 and refreshed.json()["error"] == "invalid_grant"
    # A fresh password grant still works.
    assert get_token(sim)["access_token"]


def test_expire_tokens_keeps_refresh_tokens(sim: AtHocSimulator) -> None:
    tokens = get_token(sim, scope="openid athoc.iws.web.api offline_access")
    headers = {"Authorization": "Bearer " + tokens["access_token"]}
    sim.expire_tokens()
    assert requests.get(sim.url + SEARCH_PATH, headers=headers, timeout=TIMEOUT).status_code == 401
    form = token_form(grant_type="refresh_token", refresh_token=tokens["refresh_token"])
    assert requests.post(sim.url + TOKEN_PATH, data=form, timeout=TIMEOUT).status_code == 200


@pytest.mark.parametrize("authorization", [None, "Bearer", "Bearer not-a-token", "Basic Ym9iby1zeW5jOng="])
def test_api_without_valid_bearer_token_is_401(sim: AtHocSimulator, authorization: str | None) -> None:
    headers = {"Authorization": authorization} if authorization else {}
    response = requests.get(sim.url + SEARCH_PATH, headers=headers, timeout=TIMEOUT)
    assert response.status_code == 401
    assert "Bearer" in response.headers["WWW-Authenticate"]


def test_wrong_org_is_404_and_org_path_is_case_insensitive(sim: AtHocSimulator, api: requests.Session) -> None:
    assert api.get(sim.url + "/api/v2/orgs/OTHER/users/search/basic", timeout=TIMEOUT).status_code == 404
    assert api.get(sim.url + "/API/V2/orgs/demo/Users/Search/Basic", timeout=TIMEOUT).status_code == 200
    assert api.get(sim.url + "/api/v2/orgs/DEMO/users/nothing", timeout=TIMEOUT).status_code == 404
    assert sim.count("other") == 1


# --- search ----------------------------------------------------------------------------------------


def seed(sim: AtHocSimulator, count: int) -> list[str]:
    sim.add_users({"LOGIN_ID": f"user{i:05d}@x", COLLAR: str(i)} for i in range(1, count + 1))
    return [f"user{i:05d}@x" for i in range(1, count + 1)]


@pytest.mark.parametrize("offset_mode", ["page", "record"])
def test_search_paging_returns_every_user_once(offset_mode: str) -> None:
    with AtHocSimulator(offset_mode=offset_mode) as paged:
        logins = seed(paged, 2500)
        session = requests.Session()
        session.headers["Authorization"] = "Bearer " + get_token(paged)["access_token"]
        seen: list[str] = []
        offset = 0
        while True:
            body = search(session, paged, Fields=f"LOGIN_ID,{COLLAR}", Limit=1000, Offset=offset).json()
            assert body["TotalUsers"] == 2500
            assert body["FetchedRecords"] == len(body["Users"])
            seen += [user["LOGIN_ID"] for user in body["Users"]]
            if len(body["Users"]) < 1000:
                break
            offset += 1 if offset_mode == "page" else 1000
        assert seen == logins  # every user exactly once, in USER_ID order
        assert paged.count("search") == 3
        assert [r.query["Offset"] for r in paged.requests if r.kind == "search"] == (
            ["0", "1", "2"] if offset_mode == "page" else ["0", "1000", "2000"]
        )
        # The two meanings differ: Offset=1 is the second page, or the list from the second user on.
        shifted = search(session, paged, Limit=1000, Offset=1).json()["Users"]
        assert shifted[0]["LOGIN_ID"] == ("user01001@x" if offset_mode == "page" else "user00002@x")


def test_search_limit_is_capped(sim: AtHocSimulator, api: requests.Session) -> None:
    seed(sim, 2500)
    body = search(api, sim, Fields="LOGIN_ID", Limit=5000, Offset=0).json()
    assert body["FetchedRecords"] == 1000 and len(body["Users"]) == 1000
    assert body["TotalUsers"] == 2500
    second = search(api, sim, Fields="LOGIN_ID", Limit=5000, Offset=1).json()  # page size is the capped limit
    assert second["Users"][0]["LOGIN_ID"] == "user01001@x"


def test_search_ignore_offset_mode_always_answers_first_page() -> None:
    with AtHocSimulator(offset_mode="ignore") as broken:
        seed(broken, 30)
        session = requests.Session()
        session.headers["Authorization"] = "Bearer " + get_token(broken)["access_token"]
        first = search(session, broken, Limit=10, Offset=0).json()["Users"]
        assert search(session, broken, Limit=10, Offset=1).json()["Users"] == first


def test_search_user_objects_and_missing_attributes(sim: AtHocSimulator, api: requests.Session) -> None:
    uid = sim.add_user("a@x", collar="7", duty=WHEN)
    sim.add_user("b@x")  # no collar, no duty
    body = search(api, sim, Fields=f"LOGIN_ID,{COLLAR},{DUTY}", Limit=10).json()
    assert body["Users"] == [
        {"LOGIN_ID": "a@x", "USER_ID": uid, COLLAR: "7", DUTY: WHEN},
        {"LOGIN_ID": "b@x", "USER_ID": uid + 1, COLLAR: None, DUTY: None},
    ]


def test_search_criteria(sim: AtHocSimulator, api: requests.Session) -> None:
    sim.add_user("a@x", collar="1", duty=WHEN)
    sim.add_user("b@x", collar="2", duty="")
    sim.add_user("c@x", collar="3")
    sim.add_user("o'brien@x", collar="4", duty=WHEN)

    def logins(criteria: str) -> list[str]:
        response = search(api, sim, Fields=f"LOGIN_ID,{DUTY}", Limit=100, Criteria=criteria)
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["TotalUsers"] == len(body["Users"])
        return [user["LOGIN_ID"] for user in body["Users"]]

    assert logins(f"{DUTY} pr") == ["a@x", "o'brien@x"]  # "" is not present
    assert logins(f"{DUTY} PR") == ["a@x", "o'brien@x"]  # operators are case-insensitive
    assert logins("LOGIN_ID eq 'b@x'") == ["b@x"]
    assert logins("LOGIN_ID eq 'c@x' or LOGIN_ID eq 'a@x' OR LOGIN_ID eq 'zz@x'") == ["a@x", "c@x"]
    assert logins(f"{COLLAR} eq '3' or {DUTY} pr") == ["a@x", "c@x", "o'brien@x"]
    assert logins(f"{COLLAR} eq '4' and {DUTY} pr") == ["o'brien@x"]
    assert logins("LOGIN_ID eq 'o''brien@x'") == ["o'brien@x"]
    assert logins("LOGIN_ID eq 'A@X'") == []  # exact match


@pytest.mark.parametrize(
    "criteria",
    ["LOGIN_ID", "LOGIN_ID eq", "LOGIN_ID eq b@x", "LOGIN_ID lt '1'", "LOGIN_ID pr xor COLLAR pr", "Nope pr", "'x'"],
)
def test_search_unparsable_criteria_is_400(sim: AtHocSimulator, api: requests.Session, criteria: str) -> None:
    response = search(api, sim, Criteria=criteria)
    assert response.status_code == 400
    assert response.json()["Message"].startswith("Invalid Criteria")


def test_search_presence_unsupported_is_400() -> None:
    with AtHocSimulator(supports_presence=False) as old:
        old.add_user("a@x", duty=WHEN)
        session = requests.Session()
        session.headers["Authorization"] = "Bearer " + get_token(old)["access_token"]
        assert search(session, old, Criteria=f"{DUTY} pr").status_code == 400
        eq = search(session, old, Criteria="LOGIN_ID eq 'a@x'")
        assert eq.status_code == 200 and eq.json()["TotalUsers"] == 1


def test_search_unknown_field_is_400_naming_it(sim: AtHocSimulator, api: requests.Session) -> None:
    response = search(api, sim, Fields="LOGIN_ID,Badge-Number")
    assert response.status_code == 400
    assert "Badge-Number" in response.json()["Message"]
    sim.drop_attribute(DUTY)  # an org without the duty attribute
    missing = search(api, sim, Fields=f"LOGIN_ID,{DUTY}")
    assert missing.status_code == 400 and DUTY in missing.json()["Message"]


@pytest.mark.parametrize(("limit", "offset"), [("0", "0"), ("abc", "0"), ("10", "-1"), ("10", "x")])
def test_search_bad_paging_parameters_are_400(
    sim: AtHocSimulator, api: requests.Session, limit: str, offset: str
) -> None:
    assert search(api, sim, Limit=limit, Offset=offset).status_code == 400


# --- sync ------------------------------------------------------------------------------------------


def test_sync_row_outcomes(sim: AtHocSimulator, api: requests.Session) -> None:
    ok_id = sim.add_user("ok@x", collar="1")
    sim.add_user("clear@x", collar="2", duty=WHEN)
    sim.add_user("denied@x", collar="3", duty=WHEN)
    sim.add_user("attr@x", collar="4", duty=WHEN)
    sim.add_user("date@x", collar="5", duty=WHEN)
    sim.deny("denied@x")
    rows = [
        {"LOGIN_ID": "ok@x", DUTY: "18/06/2024 08:00:00"},
        {"LOGIN_ID": "clear@x", DUTY: ""},
        {"LOGIN_ID": "ghost@x", DUTY: WHEN},
        {"LOGIN_ID": "denied@x", DUTY: ""},
        {"LOGIN_ID": "attr@x", DUTY: "", "Shoe-Size": "9"},
        {"LOGIN_ID": "date@x", DUTY: "2024-06-18T08:00:00"},
    ]
    response = sync(api, sim, rows)
    assert response.status_code == 200
    result = response.json()
    assert [r["LOGIN_ID"] for r in result] == [r["LOGIN_ID"] for r in rows]
    for sent, got in zip(rows, result, strict=True):
        assert {k: got[k] for k in sent} == sent  # fields echoed
    assert result[0][":SyncStatus"] == "OK" and result[0][":SyncDetails"] == "Updated"
    assert result[0]["USER_ID"] == ok_id
    assert result[1][":SyncStatus"] == "OK" and isinstance(result[1]["USER_ID"], int)
    assert result[2] == {
        "LOGIN_ID": "ghost@x",
        DUTY: WHEN,
        ":SyncStatus": "Error",
        ":SyncDetails": "User: ghost@x does not exists in the Organization",
        "USER_ID": None,
    }
    assert result[3][":SyncStatus"] == "Error" and result[3]["USER_ID"] is None
    assert result[3][":SyncDetails"] == "Access denied: the operator does not have permission to update user denied@x"
    assert result[4][":SyncStatus"] == "Error" and result[4][":SyncDetails"] == "Attribute 'Shoe-Size' does not exist"
    assert result[5][":SyncStatus"] == "Error"
    assert result[5][":SyncDetails"] == f"Invalid value '2024-06-18T08:00:00' for attribute '{DUTY}'"
    # Applied only where OK.
    assert sim.get_user("ok@x")[DUTY] == "18/06/2024 08:00:00"
    assert sim.get_user("clear@x")[DUTY] == ""
    assert sim.get_user("ghost@x") is None
    assert sim.get_user("denied@x")[DUTY] == WHEN
    assert sim.get_user("attr@x")[DUTY] == WHEN and "Shoe-Size" not in sim.get_user("attr@x")
    assert sim.get_user("date@x")[DUTY] == WHEN
    assert sim.get_user("ok@x")[COLLAR] == "1"  # attributes not sent are unchanged
    assert sim.history("ok@x") == ["18/06/2024 08:00:00"]
    assert sim.history("clear@x") == [""]
    assert sim.history("denied@x") == sim.history("attr@x") == sim.history("date@x") == []
    (entry,) = [r for r in sim.requests if r.kind == "sync"]
    assert entry.body == rows and entry.query["syncExistingUsersOnly"] == "true" and entry.status == 200


@pytest.mark.parametrize("query", ["", "?syncExistingUsersOnly=false", "?AllowPartialUpdate=false"])
def test_sync_creates_users_without_existing_only_flag(sim: AtHocSimulator, api: requests.Session, query: str) -> None:
    result = sync(api, sim, [{"LOGIN_ID": "new@x", DUTY: WHEN}], query=query).json()
    assert result[0][":SyncStatus"] == "OK" and result[0][":SyncDetails"] == "Created"
    assert sim.get_user("new@x")["USER_ID"] == result[0]["USER_ID"]
    assert sim.history("new@x") == [WHEN]


def test_sync_allow_partial_update(sim: AtHocSimulator, api: requests.Session) -> None:
    sim.add_user("a@x", collar="1")
    row = [{"LOGIN_ID": "a@x", DUTY: WHEN, "Shoe-Size": "9"}]
    strict = sync(api, sim, row, "?syncExistingUsersOnly=true&AllowPartialUpdate=false").json()
    assert strict[0][":SyncStatus"] == "Error" and sim.history("a@x") == []
    partial = sync(api, sim, row, "?syncExistingUsersOnly=true&AllowPartialUpdate=true").json()
    assert partial[0][":SyncStatus"] == "Partial" and "Shoe-Size" in partial[0][":SyncDetails"]
    assert sim.history("a@x") == [WHEN]


def test_sync_null_value_is_recorded_as_none(sim: AtHocSimulator, api: requests.Session) -> None:
    sim.add_user("a@x", duty=WHEN)
    assert sync(api, sim, [{"LOGIN_ID": "a@x", DUTY: None}]).json()[0][":SyncStatus"] == "OK"
    assert sim.history("a@x") == [None]  # distinguishable from the documented "" clear


def test_sync_bad_bodies(sim: AtHocSimulator, api: requests.Session) -> None:
    assert sync(api, sim, []).json() == []
    assert sync(api, sim, {"LOGIN_ID": "a@x"}).status_code == 400
    assert sync(api, sim, ["a@x"]).status_code == 400
    not_json = api.post(sim.url + SYNC_PATH, data=b"[{", headers={"Content-Type": "application/json"}, timeout=TIMEOUT)
    assert not_json.status_code == 400
    form = api.post(sim.url + SYNC_PATH, data={"LOGIN_ID": "a@x"}, timeout=TIMEOUT)
    assert form.status_code == 415
    missing_login = sync(api, sim, [{DUTY: WHEN}]).json()
    assert missing_login[0][":SyncStatus"] == "Error"
    assert api.get(sim.url + SYNC_PATH, timeout=TIMEOUT).status_code == 405


def test_history_keeps_every_write_in_order(sim: AtHocSimulator, api: requests.Session) -> None:
    sim.add_user("a@x", duty="01/01/2024 00:00:00")
    sim.set_attribute("a@x", DUTY, "02/01/2024 00:00:00")  # seeding is not history
    values = ["17/06/2024 14:30:00", "", "18/06/2024 09:00:00", "18/06/2024 09:00:00"]
    for value in values:
        sync(api, sim, [{"LOGIN_ID": "a@x", DUTY: value}])
    sync(api, sim, [{"LOGIN_ID": "a@x", DUTY: "1"}, {"LOGIN_ID": "a@x", DUTY: ""}])  # one bad, one good
    sync(api, sim, [{"LOGIN_ID": "a@x", COLLAR: "9"}])  # no duty field: no history entry
    assert sim.history("a@x") == [*values, ""]
    assert sim.history("nobody@x") == []


def test_history_entries_name_the_request_that_wrote_each_value(sim: AtHocSimulator, api: requests.Session) -> None:
    sim.add_user("a@x")
    sim.add_user("b@x")
    before = time.monotonic()
    sync(api, sim, [{"LOGIN_ID": "a@x", DUTY: WHEN}, {"LOGIN_ID": "b@x", DUTY: ""}])
    sync(api, sim, [{"LOGIN_ID": "a@x", DUTY: ""}], headers={"X-Tag": "second"})
    sync(api, sim, [{"LOGIN_ID": "a@x", COLLAR: "9"}])  # no duty field: no entry
    requests_by_seq = {r.seq: r for r in sim.requests}
    assert sorted(requests_by_seq) == list(range(1, len(sim.requests) + 1))  # numbered in arrival order
    entries = sim.history_entries("a@x")
    assert [e.value for e in entries] == sim.history("a@x") == [WHEN, ""]
    assert before <= entries[0].applied_at <= entries[1].applied_at <= time.monotonic()
    first, second = (requests_by_seq[e.request_seq] for e in entries)
    assert first.kind == second.kind == "sync" and first.seq < second.seq
    assert second.headers["X-Tag"] == "second"  # a caller's tag identifies the sender of a value
    assert sim.history_entries("b@x")[0].request_seq == first.seq
    assert sim.history_entries("nobody@x") == []


def test_pending_faults_counts_requests_still_to_be_hit(sim: AtHocSimulator, api: requests.Session) -> None:
    sim.add_user("a@x")
    assert sim.pending_faults() == 0
    sim.fail_next(2, status=429, kinds="sync")
    sim.drop_next(1, kinds="sync")
    assert sim.pending_faults() == 3
    assert search(api, sim).status_code == 200  # another kind: nothing served
    assert sync(api, sim, [{"LOGIN_ID": "a@x", DUTY: WHEN}]).status_code == 429
    assert sim.pending_faults() == 2
    sync(api, sim, [{"LOGIN_ID": "a@x", DUTY: WHEN}])
    with pytest.raises(requests.ConnectionError):
        sync(api, sim, [{"LOGIN_ID": "a@x", DUTY: WHEN}])
    assert sim.pending_faults() == 0
    sim.malform_next(1, "object")
    assert sim.pending_faults() == 1
    sim.clear_faults()
    assert sim.pending_faults() == 0


def test_sync_is_thread_safe(sim: AtHocSimulator) -> None:
    sim.add_users({"LOGIN_ID": f"u{i}@x"} for i in range(8))
    token = get_token(sim)["access_token"]

    def worker(i: int) -> None:
        with requests.Session() as session:
            session.headers["Authorization"] = "Bearer " + token
            for n in range(25):
                value = f"{n + 1:02d}/01/2024 00:00:00"
                assert sync(session, sim, [{"LOGIN_ID": f"u{i}@x", DUTY: value}]).status_code == 200

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sim.count("sync") == 200
    for i in range(8):
        assert sim.history(f"u{i}@x") == [f"{n + 1:02d}/01/2024 00:00:00" for n in range(25)]


def test_large_org_and_large_sync() -> None:
    with AtHocSimulator() as big:
        started = time.monotonic()
        big.add_users(demo_users(50_000))
        session = requests.Session()
        session.headers["Authorization"] = "Bearer " + get_token(big)["access_token"]
        rows = [{"LOGIN_ID": f"user{i:05d}@demo.example", DUTY: WHEN} for i in range(1, 1001)]
        result = sync(session, big, rows).json()
        assert [r[":SyncStatus"] for r in result] == ["OK"] * 1000
        body = search(session, big, Fields=f"LOGIN_ID,{DUTY}", Limit=1000, Offset=49, Criteria=None).json()
        assert body["TotalUsers"] == 50_000 and body["Users"][-1]["LOGIN_ID"] == "user50000@demo.example"
        assert search(session, big, Criteria=f"{DUTY} pr", Limit=1).json()["TotalUsers"] == 1000
        assert time.monotonic() - started < 30  # generous: it takes well under a second


# --- faults ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("retry_after", [None, 2, "Wed, 21 Oct 2015 07:28:00 GMT"])
def test_fail_next_answers_status_and_retry_after(
    sim: AtHocSimulator, api: requests.Session, retry_after: int | str | None
) -> None:
    sim.add_user("a@x")
    sim.fail_next(2, status=429, retry_after=retry_after, kinds=("sync",))
    assert search(api, sim).status_code == 200  # other kinds unaffected
    for _ in range(2):
        failed = sync(api, sim, [{"LOGIN_ID": "a@x", DUTY: WHEN}])
        assert failed.status_code == 429
        if retry_after is None:
            assert "Retry-After" not in failed.headers
        else:
            assert failed.headers["Retry-After"] == str(retry_after)
    assert sim.history("a@x") == []  # a failed request applies nothing
    assert sync(api, sim, [{"LOGIN_ID": "a@x", DUTY: WHEN}]).status_code == 200
    assert sim.history("a@x") == [WHEN]
    assert [r.fault for r in sim.requests if r.kind == "sync"] == ["fail", "fail", None]


def test_fail_next_any_kind_includes_token_but_not_control(sim: AtHocSimulator) -> None:
    sim.fail_next(2)
    assert requests.get(sim.url + "/__sim__/counts", timeout=TIMEOUT).status_code == 200
    assert requests.post(sim.url + TOKEN_PATH, data=token_form(), timeout=TIMEOUT).status_code == 503
    assert requests.get(sim.url + DISCOVERY_PATH, timeout=TIMEOUT).status_code == 503
    assert requests.get(sim.url + DISCOVERY_PATH, timeout=TIMEOUT).status_code == 200


def test_drop_next_closes_connection_without_response(sim: AtHocSimulator, api: requests.Session) -> None:
    sim.add_user("a@x")
    sim.drop_next(1, kinds="sync")
    assert search(api, sim).status_code == 200  # pooled connection, then dropped on the sync
    with pytest.raises(requests.ConnectionError):
        sync(api, sim, [{"LOGIN_ID": "a@x", DUTY: WHEN}])
    assert sim.history("a@x") == []
    assert sync(api, sim, [{"LOGIN_ID": "a@x", DUTY: WHEN}]).status_code == 200
    dropped = next(r for r in sim.requests if r.kind == "sync")
    assert dropped.status is None and dropped.fault == "drop" and dropped.body == [{"LOGIN_ID": "a@x", DUTY: WHEN}]


def test_drop_after_apply_applies_then_drops(sim: AtHocSimulator, api: requests.Session) -> None:
    sim.add_user("a@x")
    sim.drop_next(1, kinds=["sync"], after_apply=True)
    with pytest.raises(requests.ConnectionError):
        sync(api, sim, [{"LOGIN_ID": "a@x", DUTY: WHEN}])
    assert sim.history("a@x") == [WHEN]


def test_latency_delays_api_but_not_control(sim: AtHocSimulator) -> None:
    sim.latency = 0.3
    started = time.monotonic()
    assert requests.get(sim.url + DISCOVERY_PATH, timeout=TIMEOUT).status_code == 200
    assert time.monotonic() - started >= 0.3
    sim.latency = 30  # a control request that waited for it would time out below, on any machine
    assert requests.get(sim.url + "/__sim__/counts", timeout=10).status_code == 200


@pytest.mark.parametrize("mode", ["not_json", "object", "drop_rows", "wrong_logins"])
def test_malform_next(sim: AtHocSimulator, api: requests.Session, mode: str) -> None:
    sim.add_user("a@x")
    sim.add_user("b@x")
    rows = [{"LOGIN_ID": "a@x", DUTY: WHEN}, {"LOGIN_ID": "b@x", DUTY: WHEN}]
    sim.malform_next(1, mode)
    assert search(api, sim).status_code == 200  # only sync answers are malformed
    response = sync(api, sim, rows)
    assert response.status_code == 200
    if mode == "not_json":
        assert response.headers["Content-Type"].startswith("text/html")
        with pytest.raises(ValueError):
            response.json()
    elif mode == "object":
        assert isinstance(response.json(), dict)
    elif mode == "drop_rows":
        assert [r["LOGIN_ID"] for r in response.json()] == ["a@x"]
    else:
        logins = [r["LOGIN_ID"] for r in response.json()]
        assert len(logins) == 2 and logins != ["a@x", "b@x"]
    assert sim.history("a@x") == [WHEN]  # the server did the work; only the answer is garbled
    good = sync(api, sim, rows).json()
    assert [r["LOGIN_ID"] for r in good] == ["a@x", "b@x"]
    assert [r.fault for r in sim.requests if r.kind == "sync"] == [f"malform:{mode}", None]


def test_fault_arguments_are_validated(sim: AtHocSimulator) -> None:
    with pytest.raises(ValueError):
        sim.malform_next(1, "garbage")
    with pytest.raises(ValueError):
        sim.fail_next(1, kinds=("sink",))


# --- python API and lifecycle ----------------------------------------------------------------------


def test_python_user_api(sim: AtHocSimulator) -> None:
    first = sim.add_user("a@x", collar="1", duty=WHEN, FIRSTNAME="Ann")
    second = sim.add_user("b@x", collar="2")
    assert second > first
    assert sim.add_user("a@x", collar="10") == first  # updates keep the USER_ID
    user = sim.get_user("a@x")
    assert user == {"LOGIN_ID": "a@x", "USER_ID": first, COLLAR: "10", DUTY: WHEN, "FIRSTNAME": "Ann"}
    user[COLLAR] = "changed"
    assert sim.get_user("a@x")[COLLAR] == "10"  # a copy
    ids = sim.add_users([{"LOGIN_ID": "c@x", "Rank": "PC"}])
    assert ids[0] > second and "Rank" in sim.attributes
    assert [u["LOGIN_ID"] for u in sim.users()] == ["a@x", "b@x", "c@x"]
    sim.remove_user("b@x")
    assert sim.get_user("b@x") is None and len(sim.users()) == 2
    sim.set_attribute("a@x", DUTY, "")
    assert sim.get_user("a@x")[DUTY] == "" and sim.history("a@x") == []


def test_session_pools_connections_and_stop_closes_them() -> None:
    simulator = AtHocSimulator().start()
    session = requests.Session()
    for _ in range(3):
        assert session.get(simulator.url + DISCOVERY_PATH, timeout=TIMEOUT).status_code == 200
    assert len({r.client_port for r in simulator.requests}) == 1  # keep-alive: one connection
    url = simulator.url
    simulator.stop()
    with pytest.raises(requests.ConnectionError):
        session.get(url + DISCOVERY_PATH, timeout=TIMEOUT)
    simulator.stop()  # idempotent


def test_reset_log(sim: AtHocSimulator) -> None:
    requests.get(sim.url + DISCOVERY_PATH, timeout=TIMEOUT)
    assert sim.count("discovery") == 1 and len(sim.requests) == 1
    sim.reset_log()
    assert sim.count("discovery") == 0 and sim.requests == []


# --- control API -----------------------------------------------------------------------------------


def test_control_api(sim: AtHocSimulator, api: requests.Session) -> None:
    control = sim.url + "/__sim__/"
    added = requests.post(
        control + "users", json=[{"LOGIN_ID": "a@x", COLLAR: "1"}, {"LOGIN_ID": "b@x"}], timeout=TIMEOUT
    )
    assert added.status_code == 200 and len(added.json()["user_ids"]) == 2
    assert requests.post(control + "users", json={"LOGIN_ID": "a@x"}, timeout=TIMEOUT).status_code == 400
    state = requests.get(control + "state", timeout=TIMEOUT).json()
    assert [u["LOGIN_ID"] for u in state["users"]] == ["a@x", "b@x"] and state["users"][0][COLLAR] == "1"
    assert requests.get(control + "user", params={"login": "b@x"}, timeout=TIMEOUT).json()["LOGIN_ID"] == "b@x"
    assert requests.get(control + "user", params={"login": "zz"}, timeout=TIMEOUT).status_code == 404

    sync(api, sim, [{"LOGIN_ID": "a@x", DUTY: WHEN}])
    history = requests.get(control + "history", params={"login": "a@x"}, timeout=TIMEOUT).json()
    assert history == {"login": "a@x", "history": [WHEN]}

    faults = {
        "fail_next": {"count": 1, "status": 503, "retry_after": 1, "kinds": ["sync"]},
        "drop_next": {"count": 1, "kinds": ["search"]},
        "malform_next": {"count": 1, "mode": "drop_rows"},
        "deny": ["b@x"],
    }
    assert requests.post(control + "faults", json=faults, timeout=TIMEOUT).status_code == 200
    failed = sync(api, sim, [{"LOGIN_ID": "a@x", DUTY: ""}])
    assert failed.status_code == 503 and failed.headers["Retry-After"] == "1"
    with pytest.raises(requests.ConnectionError):
        search(api, sim)
    assert sync(api, sim, [{"LOGIN_ID": "a@x", DUTY: ""}]).json() == []  # drop_rows
    assert sync(api, sim, [{"LOGIN_ID": "b@x", DUTY: ""}]).json()[0][":SyncStatus"] == "Error"  # denied

    assert requests.post(control + "faults", json={"latency": 0.2}, timeout=TIMEOUT).status_code == 200
    assert sim.latency == 0.2
    requests.post(control + "faults", json={"latency": 0}, timeout=TIMEOUT)
    assert requests.post(control + "faults", json={"revoke_tokens": True}, timeout=TIMEOUT).status_code == 200
    assert search(api, sim).status_code == 401
    assert requests.post(control + "faults", json={"bogus": 1}, timeout=TIMEOUT).status_code == 400
    assert requests.post(control + "faults", json={"malform_next": {"count": 1}}, timeout=TIMEOUT).status_code == 400

    counts = requests.get(control + "counts", timeout=TIMEOUT).json()
    assert set(counts) == {"discovery", "token", "search", "sync", "control", "other"}
    assert counts["sync"] == 4 and counts["search"] == 2 and counts["token"] == 1
    logged = requests.get(control + "requests", timeout=TIMEOUT).json()
    assert logged[0]["kind"] == "token" and logged[0]["body"]["password"] == "***"
    assert requests.post(control + "reset_log", timeout=TIMEOUT).status_code == 200
    assert sim.count("sync") == 0
    assert requests.get(control + "nothing", timeout=TIMEOUT).status_code == 404


# --- command line ----------------------------------------------------------------------------------


def test_command_line(tmp_path: Path) -> None:
    ready = tmp_path / "ready.txt"
    process = subprocess.Popen(
        [sys.executable, "-m", "tools.athoc_sim", "--demo-users", "25", "--ready-file", str(ready)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        line = process.stdout.readline().strip()
        assert line.startswith("ATHOC_SIM_URL=http://127.0.0.1:")
        url = line.split("=", 1)[1]
        assert ready.read_text().strip() == url
        state = requests.get(url + "/__sim__/state", timeout=TIMEOUT).json()
        assert len(state["users"]) == 25
        assert state["users"][0]["LOGIN_ID"] == "user00001@demo.example" and state["users"][0][COLLAR] == "1"
        form = token_form()
        assert requests.post(url + TOKEN_PATH, data=form, timeout=TIMEOUT).status_code == 200
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=TIMEOUT)
    assert process.returncode == 0
    assert stderr == ""  # quiet: no per-request log lines


def test_sync_accepts_a_chunked_body(sim: AtHocSimulator, api: requests.Session) -> None:
    sim.add_user("a@x", duty=WHEN)
    body = b'[{"LOGIN_ID": "a@x", "On-Duty-DTG": ""}]'
    chunks = (body[i : i + 7] for i in range(0, len(body), 7))  # a generator makes requests send chunked
    response = api.post(
        sim.url + SYNC_PATH + "?syncExistingUsersOnly=true",
        data=chunks,
        headers={"Content-Type": "application/json"},
        timeout=TIMEOUT,
    )
    assert response.status_code == 200 and response.json()[0][":SyncStatus"] == "OK"
    assert next(r for r in sim.requests if r.kind == "sync").headers.get("Transfer-Encoding") == "chunked"
    assert search(api, sim).status_code == 200  # the connection is still in step
    assert sim.history("a@x") == [""]


# --- switchable behaviours of other servers --------------------------------------------------------


def logins_of(response: requests.Response) -> list[str]:
    assert response.status_code == 200, response.text
    return [user["LOGIN_ID"] for user in response.json()["Users"]]


@pytest.mark.parametrize(
    ("content_type", "bom"), [("text/json", False), ("text/plain", False), ("application/json; charset=utf-8", True)]
)
def test_json_wire_format(sim: AtHocSimulator, api: requests.Session, content_type: str, bom: bool) -> None:
    sim.add_user("josé.müller@x", collar="1")
    sim.configure(json_content_type=content_type, json_bom=bom, json_ascii_only=False)
    response = search(api, sim, Fields="LOGIN_ID")
    assert response.headers["Content-Type"] == content_type
    assert response.content.startswith(b"\xef\xbb\xbf") == bom
    assert "josé.müller@x".encode() in response.content  # raw UTF-8, not \u escapes
    token = requests.post(sim.url + TOKEN_PATH, data=token_form(), timeout=TIMEOUT)
    assert token.headers["Content-Type"] == content_type and token.content.startswith(b"\xef\xbb\xbf") == bom
    control = requests.get(sim.url + "/__sim__/state", timeout=TIMEOUT)  # control answers stay standard
    assert control.headers["Content-Type"] == "application/json; charset=utf-8"
    assert control.json()["users"][0]["LOGIN_ID"] == "josé.müller@x"
    sim.configure(json_content_type="application/json; charset=utf-8", json_bom=False, json_ascii_only=True)
    assert b"\\u00e9" in search(api, sim, Fields="LOGIN_ID").content  # the default: ASCII with escapes


def test_search_page1_offset_mode_reads_offset_as_1_based_page_number(
    sim: AtHocSimulator, api: requests.Session
) -> None:
    seed(sim, 25)
    sim.configure(offset_mode="page1")
    pages = [logins_of(search(api, sim, Limit=10, Offset=offset)) for offset in range(4)]
    assert pages[0] == pages[1] == [f"user{i:05d}@x" for i in range(1, 11)]  # 0 and 1 are both page 1
    assert pages[2][0] == "user00011@x" and pages[3] == [f"user{i:05d}@x" for i in range(21, 26)]


@pytest.mark.parametrize("skip_by_requested", [False, True])
def test_search_page_skip_unit_with_a_capped_limit(skip_by_requested: bool) -> None:
    with AtHocSimulator(max_limit=10) as capped:
        seed(capped, 50)
        capped.configure(page_skip_by_requested_limit=skip_by_requested)
        session = requests.Session()
        session.headers["Authorization"] = "Bearer " + get_token(capped)["access_token"]
        second = logins_of(search(session, capped, Limit=20, Offset=1))
        assert len(second) == 10
        # Capped to 10 rows either way; page 1 starts after 20 users (requested Limit) or 10 (the cap).
        assert second[0] == ("user00021@x" if skip_by_requested else "user00011@x")


def test_search_omit_total_users(sim: AtHocSimulator, api: requests.Session) -> None:
    seed(sim, 3)
    sim.configure(omit_total_users=True)
    body = search(api, sim).json()
    assert "TotalUsers" not in body and len(body["Users"]) == 3 and body["FetchedRecords"] == 3
    sim.configure(omit_total_users=False)
    assert search(api, sim).json()["TotalUsers"] == 3


@pytest.mark.parametrize("form", ["null", "missing", "list"])
def test_search_empty_page_forms(sim: AtHocSimulator, api: requests.Session, form: str) -> None:
    seed(sim, 2)
    sim.configure(empty_users_as=form)
    empty = search(api, sim, Limit=10, Offset=5).json()
    assert empty["TotalUsers"] == 2 and empty["FetchedRecords"] == 0
    if form == "missing":
        assert "Users" not in empty
    else:
        assert empty["Users"] == (None if form == "null" else [])
    assert len(search(api, sim, Limit=10).json()["Users"]) == 2  # a page with users is unchanged


@pytest.mark.parametrize("status", [404, 422, 500, 501])
def test_search_criteria_status(sim: AtHocSimulator, api: requests.Session, status: int) -> None:
    sim.add_user("a@x", duty=WHEN)
    sim.configure(criteria_status=status)
    assert search(api, sim, Criteria=f"{DUTY} pr").status_code == status
    assert logins_of(search(api, sim)) == ["a@x"]  # searches without Criteria still work
    sim.configure(criteria_status=None)
    assert logins_of(search(api, sim, Criteria=f"{DUTY} pr")) == ["a@x"]


def test_search_ignore_unknown_fields_and_omit_null_fields(sim: AtHocSimulator, api: requests.Session) -> None:
    uid = sim.add_user("a@x", collar="7")
    sim.configure(ignore_unknown_fields=True)
    body = search(api, sim, Fields=f"LOGIN_ID,Badge-Number,{COLLAR}").json()
    assert body["Users"] == [{"LOGIN_ID": "a@x", "USER_ID": uid, COLLAR: "7"}]  # no 400, no key
    sim.configure(ignore_unknown_fields=False, omit_null_fields=True)
    body = search(api, sim, Fields=f"LOGIN_ID,{COLLAR},{DUTY}").json()
    assert body["Users"] == [{"LOGIN_ID": "a@x", "USER_ID": uid, COLLAR: "7"}]  # the null duty left out
    assert search(api, sim, Fields="LOGIN_ID,Badge-Number").status_code == 400


def test_login_less_users_appear_in_search_and_never_match_a_sync(sim: AtHocSimulator, api: requests.Session) -> None:
    sim.add_user("a@x")
    ids = [
        sim.add_login_less_user(None),
        sim.add_login_less_user(""),
        sim.add_login_less_user(OMIT_LOGIN, **{COLLAR: "9"}),
    ]
    users = search(api, sim, Fields=f"LOGIN_ID,{COLLAR}").json()["Users"]
    assert [user["USER_ID"] for user in users[1:]] == ids
    assert users[1]["LOGIN_ID"] is None and users[2]["LOGIN_ID"] == ""
    assert "LOGIN_ID" not in users[3] and users[3][COLLAR] == "9"
    rows = sync(api, sim, [{"LOGIN_ID": "", DUTY: WHEN}, {"LOGIN_ID": None, DUTY: WHEN}]).json()
    assert [row[":SyncStatus"] for row in rows] == ["Error", "Error"]


def test_malform_anonymous_errors_strips_the_login_of_error_rows_only(
    sim: AtHocSimulator, api: requests.Session
) -> None:
    sim.add_user("a@x")
    sim.malform_next(1, "anonymous_errors")
    rows = sync(api, sim, [{"LOGIN_ID": "a@x", DUTY: WHEN}, {"LOGIN_ID": "ghost@x", DUTY: WHEN}]).json()
    assert rows[0]["LOGIN_ID"] == "a@x" and rows[0][":SyncStatus"] == "OK"
    assert "LOGIN_ID" not in rows[1] and "ghost@x does not exists" in rows[1][":SyncDetails"]
    assert sim.history("a@x") == [WHEN]


def test_malform_conflicting_rows_repeats_the_first_row_with_the_other_outcome(
    sim: AtHocSimulator, api: requests.Session
) -> None:
    sim.add_user("a@x")
    sim.malform_next(1, "conflicting_rows")
    rows = sync(api, sim, [{"LOGIN_ID": "a@x", DUTY: WHEN}, {"LOGIN_ID": "ghost@x", DUTY: WHEN}]).json()
    assert [(r["LOGIN_ID"], r[":SyncStatus"]) for r in rows] == [("a@x", "OK"), ("ghost@x", "Error"), ("a@x", "Error")]
    assert rows[2][":SyncDetails"] == "Internal error" and sim.history("a@x") == [WHEN]


def test_token_errors_echo_request(sim: AtHocSimulator) -> None:
    sim.configure(token_errors_echo_request=True)
    response = requests.post(sim.url + TOKEN_PATH, data=token_form(password="P@ss w/rd&x"), timeout=TIMEOUT)
    assert response.status_code == 400
    description = response.json()["error_description"]
    assert description.startswith("invalid_username_or_password; request: grant_type=password")
    assert "password=P%40ss+w%2Frd%26x" in description  # the form as sent, url-encoded
    assert sim.requests[-1].body["password"] == "***"  # the simulator's own log stays redacted


def test_configure_validates_and_is_reachable_through_the_control_api(sim: AtHocSimulator) -> None:
    for bad in ({"offset_mode": "sideways"}, {"empty_users_as": "nothing"}, {"criteria_status": 200}):
        with pytest.raises(ValueError):
            sim.configure(**bad)
    with pytest.raises(TypeError):
        sim.configure(bogus=True)  # type: ignore[call-arg]
    control = sim.url + "/__sim__/configure"
    answer = requests.post(control, json={"offset_mode": "page1", "criteria_status": 501}, timeout=TIMEOUT)
    assert answer.status_code == 200
    assert sim.offset_mode == "page1" and sim.criteria_status == 501
    assert requests.post(control, json={"bogus": 1}, timeout=TIMEOUT).status_code == 400
    assert requests.post(control, json={"criteria_status": "x"}, timeout=TIMEOUT).status_code == 400
    assert requests.post(control, json=[1], timeout=TIMEOUT).status_code == 400
    assert sim.offset_mode == "page1" and sim.criteria_status == 501  # a refused request changed nothing
