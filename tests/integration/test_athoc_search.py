"""users/search/basic against the simulator and an odd purpose-built server over real HTTP: paging
whatever Offset means, capped Limits, wrong or absent TotalUsers, and attribute checks."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest

from shared.athoc import AtHocClient, AtHocError
from shared.errors import ErrorKind
from tests.integration.athoc_support import (
    COLLAR,
    DUTY,
    WHEN,
    LoopbackServer,
    QuietHandler,
)
from tools.athoc_sim import OMIT_LOGIN, AtHocSimulator

pytestmark = [pytest.mark.timeout(60), pytest.mark.usefixtures("clean_environment")]


@pytest.mark.parametrize(("offset_mode", "expected_requests"), [("page", 3), ("record", 4)])
def test_paging_returns_every_user_once(
    make_sim: Callable[..., AtHocSimulator],
    make_client: Callable[..., AtHocClient],
    caplog: pytest.LogCaptureFixture,
    offset_mode: str,
    expected_requests: int,
) -> None:
    caplog.set_level(logging.INFO, logger="shared.athoc")
    sim = make_sim(offset_mode=offset_mode)
    sim.add_users([{"LOGIN_ID": f"u{i:05d}", COLLAR: str(i)} for i in range(2500)])
    users = make_client(sim).search_users([COLLAR, DUTY])
    assert [u["LOGIN_ID"] for u in users] == [f"u{i:05d}" for i in range(2500)]
    assert all(u[COLLAR] == u["LOGIN_ID"][1:].lstrip("0") or u[COLLAR] == "0" for u in users)
    assert all(DUTY in u for u in users)
    assert sim.count("search") == expected_requests
    # Every user the server counted in TotalUsers was listed (no "TotalUsers=... but listed" warning).
    summaries = [r.getMessage() for r in caplog.records if r.getMessage().startswith("users/search/basic:")]
    assert len(summaries) == 1 and summaries[0].startswith(f"users/search/basic: 2500 users in {expected_requests} ")


@pytest.mark.parametrize("offset_mode", ["page", "record"])
def test_paging_when_the_server_caps_the_page_size(
    make_sim: Callable[..., AtHocSimulator], make_client: Callable[..., AtHocClient], offset_mode: str
) -> None:
    sim = make_sim(offset_mode=offset_mode, max_limit=300)
    sim.add_users([{"LOGIN_ID": f"u{i:05d}"} for i in range(1000)])
    users = make_client(sim).search_users([])
    assert sorted(u["LOGIN_ID"] for u in users) == [f"u{i:05d}" for i in range(1000)]
    assert sim.count("search") <= 6


@pytest.mark.parametrize("offset_mode", ["page", "record"])
def test_paging_with_tiny_pages(
    make_sim: Callable[..., AtHocSimulator], make_client: Callable[..., AtHocClient], offset_mode: str
) -> None:
    sim = make_sim(offset_mode=offset_mode)
    sim.add_users([{"LOGIN_ID": f"u{i}"} for i in range(7)])
    users = make_client(sim, page_size=2).search_users([])
    assert [u["LOGIN_ID"] for u in users] == [f"u{i}" for i in range(7)]
    assert sim.count("search") == 4


def test_paging_an_empty_org_and_a_single_page(
    make_sim: Callable[..., AtHocSimulator], make_client: Callable[..., AtHocClient]
) -> None:
    sim = make_sim()
    client = make_client(sim)
    assert client.search_users([COLLAR]) == []
    assert sim.count("search") == 1
    sim.add_users([{"LOGIN_ID": f"u{i}"} for i in range(10)])
    assert len(client.search_users([COLLAR])) == 10
    assert sim.count("search") == 2


def test_server_ignoring_offset_cannot_make_paging_loop(
    make_sim: Callable[..., AtHocSimulator], make_client: Callable[..., AtHocClient]
) -> None:
    sim = make_sim(offset_mode="ignore")
    sim.add_users([{"LOGIN_ID": f"u{i:05d}"} for i in range(2500)])
    with pytest.raises(AtHocError) as caught:
        make_client(sim).search_users([COLLAR])
    assert caught.value.kind is ErrorKind.PROTOCOL
    assert "1000 of 2500" in str(caught.value)
    assert [r.query["Offset"] for r in sim.requests if r.kind == "search"] == ["0", "1", "2"]


def test_criteria_is_passed_through(sim: AtHocSimulator, make_client: Callable[..., AtHocClient]) -> None:
    sim.add_user("erin", duty=WHEN)
    users = make_client(sim).search_users([DUTY], criteria=f"{DUTY} pr")
    assert [u["LOGIN_ID"] for u in users] == ["erin"]
    assert [r.query["Criteria"] for r in sim.requests if r.kind == "search"] == [f"{DUTY} pr"]


def test_criteria_unsupported_is_a_clear_error(
    make_sim: Callable[..., AtHocSimulator], make_client: Callable[..., AtHocClient]
) -> None:
    sim = make_sim(supports_presence=False)
    with pytest.raises(AtHocError) as caught:
        make_client(sim).search_users([DUTY], criteria=f"{DUTY} pr")
    assert caught.value.status == 400 and "'pr'" in str(caught.value)


class _PagingServer(LoopbackServer):
    """A deliberately odd search server: TotalUsers wrong or absent, Offset as records or pages."""

    def __init__(self, logins: list[str], *, reported_total: int | None, offset_mode: str) -> None:
        self.logins = logins
        self.reported_total = reported_total
        self.offset_mode = offset_mode
        self.searches = 0
        owner = self

        class Handler(QuietHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                self.reply_json({"access_token": "paging-token", "expires_in": 3600})

            def do_GET(self) -> None:
                owner.searches += 1
                query = dict(parse_qsl(urlsplit(self.path).query))
                limit, offset = int(query["Limit"]), int(query["Offset"])
                start = offset * limit if owner.offset_mode == "page" else offset
                page = [{"LOGIN_ID": login} for login in owner.logins[start : start + limit]]
                payload: dict[str, Any] = {"Users": page, "FetchedRecords": len(page)}
                if owner.reported_total is not None:
                    payload["TotalUsers"] = owner.reported_total
                self.reply_json(payload)

        super().__init__(Handler)


@pytest.mark.parametrize("offset_mode", ["page", "record"])
@pytest.mark.parametrize("reported_total", [10_000, None])
def test_total_users_wrong_or_absent_still_terminates(
    make_client: Callable[..., AtHocClient],
    caplog: pytest.LogCaptureFixture,
    offset_mode: str,
    reported_total: int | None,
) -> None:
    server = _PagingServer([f"u{i:04d}" for i in range(2500)], reported_total=reported_total, offset_mode=offset_mode)
    try:
        users = make_client(server.url).search_users([])
    finally:
        server.stop()
    assert [u["LOGIN_ID"] for u in users] == [f"u{i:04d}" for i in range(2500)]
    assert server.searches <= 5  # stopped by the empty page after the last one
    if reported_total is not None:
        assert "TotalUsers=10000 but listed 2500" in caplog.text


@pytest.mark.parametrize(
    ("offset_mode", "skip_by_requested"),
    [("page", False), ("page", True), ("page1", False), ("page1", True), ("record", False)],
)
@pytest.mark.parametrize("omit_total", [False, True])
def test_paging_adopts_the_page_size_the_server_caps_to(
    make_sim: Callable[..., AtHocSimulator],
    make_client: Callable[..., AtHocClient],
    offset_mode: str,
    skip_by_requested: bool,
    omit_total: bool,
) -> None:
    sim = make_sim(offset_mode=offset_mode, max_limit=100)
    sim.configure(page_skip_by_requested_limit=skip_by_requested, omit_total_users=omit_total)
    sim.add_users([{"LOGIN_ID": f"u{i:05d}"} for i in range(2500)])
    users = make_client(sim, page_size=1000).search_users([])
    assert [u["LOGIN_ID"] for u in users] == [f"u{i:05d}" for i in range(2500)]
    searches = [r for r in sim.requests if r.kind == "search"]
    limits = [int(r.query["Limit"]) for r in searches]
    # The cap is adopted at once; only a short last page may shrink it further (then the list is at its end).
    assert limits[0] == 1000 and set(limits[1:-1]) == {100} and limits[-1] <= 100
    # About TotalUsers / page size: 25 pages, the Offset=1 (and 1-based Offset=2) probe, one empty page.
    assert 25 <= len(searches) <= 28


@pytest.mark.parametrize("omit_total", [False, True])
def test_paging_with_1_based_page_numbers(
    make_sim: Callable[..., AtHocSimulator], make_client: Callable[..., AtHocClient], omit_total: bool
) -> None:
    sim = make_sim(offset_mode="page1")
    sim.configure(omit_total_users=omit_total)
    sim.add_users([{"LOGIN_ID": f"u{i:05d}"} for i in range(2500)])
    users = make_client(sim).search_users([])
    assert [u["LOGIN_ID"] for u in users] == [f"u{i:05d}" for i in range(2500)]
    offsets = [r.query["Offset"] for r in sim.requests if r.kind == "search"]
    # Offset=1 repeats page 1, Offset=2 is new: page numbers from 2 on. Without TotalUsers the short
    # last page (500) becomes the page size, and the next page (number 6 of 500) is empty.
    assert offsets == (["0", "1", "2", "3", "6"] if omit_total else ["0", "1", "2", "3"])


def test_server_ignoring_offset_without_total_gives_its_one_page_with_a_warning(
    make_sim: Callable[..., AtHocSimulator], make_client: Callable[..., AtHocClient], caplog: pytest.LogCaptureFixture
) -> None:
    sim = make_sim(offset_mode="ignore")
    sim.configure(omit_total_users=True)
    sim.add_users([{"LOGIN_ID": f"u{i:05d}"} for i in range(2500)])
    assert len(make_client(sim).search_users([])) == 1000  # nothing says more exist
    assert sim.count("search") == 3
    assert "Offset 0, 1 and 2 all answered the same 1000 users" in caplog.text


@pytest.mark.parametrize("form", ["null", "missing"])
def test_empty_page_as_null_or_without_users(
    make_sim: Callable[..., AtHocSimulator], make_client: Callable[..., AtHocClient], form: str
) -> None:
    sim = make_sim()
    sim.configure(empty_users_as=form)
    client = make_client(sim)
    assert client.search_users([COLLAR]) == []  # TotalUsers 0
    assert sim.count("search") == 1
    sim.add_users([{"LOGIN_ID": f"u{i:05d}"} for i in range(2500)])
    sim.configure(omit_total_users=True)  # the end of the list is the empty page
    if form == "null":
        assert len(client.search_users([COLLAR])) == 2500
    else:  # no Users and no TotalUsers says nothing: not trusted as the end of the list
        with pytest.raises(AtHocError) as caught:
            client.search_users([COLLAR])
        assert caught.value.kind is ErrorKind.PROTOCOL and "no Users array" in str(caught.value)


@pytest.mark.parametrize("offset_mode", ["page", "record"])
def test_user_rows_without_login_are_skipped_and_counted_once(
    make_sim: Callable[..., AtHocSimulator],
    make_client: Callable[..., AtHocClient],
    caplog: pytest.LogCaptureFixture,
    offset_mode: str,
) -> None:
    sim = make_sim(offset_mode=offset_mode)
    sim.add_users([{"LOGIN_ID": f"u{i}", COLLAR: str(i)} for i in range(3)])
    sim.add_login_less_user(None, **{COLLAR: "90"})
    sim.add_login_less_user("", **{COLLAR: "91"})
    sim.add_users([{"LOGIN_ID": f"u{i}", COLLAR: str(i)} for i in range(3, 6)])
    sim.add_login_less_user(OMIT_LOGIN, **{COLLAR: "92"})
    caplog.set_level(logging.WARNING, logger="shared.athoc")
    users = make_client(sim, page_size=2).search_users([COLLAR])
    assert [u["LOGIN_ID"] for u in users] == [f"u{i}" for i in range(6)]
    warnings_logged = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert [m for m in warnings_logged if "without LOGIN_ID" in m] == [
        "users/search/basic: skipped 3 user rows without LOGIN_ID (users AtHoc cannot update by login)"
    ]
    assert not any("TotalUsers" in m for m in warnings_logged)  # 6 users + 3 skipped rows == TotalUsers 9


def test_attribute_readable(sim: AtHocSimulator, make_client: Callable[..., AtHocClient]) -> None:
    client = make_client(sim)
    assert client.attribute_readable(DUTY).readable
    missing = client.attribute_readable("No-Such-Field")
    assert not missing.readable
    assert "No-Such-Field" in missing.detail
    search = [r for r in sim.requests if r.kind == "search"]
    assert search[0].query["Limit"] == "1"
    assert search[0].query["Fields"] == f"LOGIN_ID,{DUTY}"


def test_attribute_readable_when_the_server_ignores_unknown_fields(
    sim: AtHocSimulator, make_client: Callable[..., AtHocClient]
) -> None:
    sim.configure(ignore_unknown_fields=True)
    client = make_client(sim)
    typo = client.attribute_readable("On-Duty-Typo")
    assert not typo.readable
    assert "no such field in 1 rows: check the common name" in typo.detail
    assert "On-Duty-Typo" in typo.detail  # the Criteria probe's 400 names it
    assert client.attribute_readable(DUTY).readable  # null values: the key is there
    assert sim.count("search") == 3  # the confirming Criteria search only for the missing key


def test_attribute_readable_when_the_server_leaves_out_empty_values(
    sim: AtHocSimulator, make_client: Callable[..., AtHocClient]
) -> None:
    sim.configure(omit_null_fields=True)
    sim.add_user("erin", duty=WHEN)  # the only user with a value, listed after four without
    result = make_client(sim).attribute_readable(DUTY)
    assert result.readable and "leaves empty values out" in result.detail
    criteria = [r.query.get("Criteria") for r in sim.requests if r.kind == "search"]
    assert criteria == [None, f"{DUTY} pr"]
