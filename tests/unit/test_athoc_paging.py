"""UserPager (shared.athoc.paging) against in-memory servers: pure, no HTTP.

Each fake server answers a PageRequest the way a real one might read `Offset` (page index, 1-based page
number, record offset, or not at all), optionally capping `Limit` and leaving out TotalUsers.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.athoc.errors import AtHocProtocolError
from shared.athoc.paging import MAX_PAGES_WITHOUT_TOTAL, OffsetMeaning, PageRequest, UserPager
from shared.athoc.users import JsonObject
from shared.errors import ErrorKind

Page = tuple[list[JsonObject], int | None]


@dataclass
class FakeServer:
    """A user list served page by page, recording every request."""

    users: Sequence[JsonObject]
    offset_mode: str = "page"  # "page", "page1", "record" or "ignore"
    max_limit: int = 1000
    report_total: bool | int = True  # True: the real count; an int: that (wrong) count; False: none
    skip_by_requested_limit: bool = False  # page indexes count pages of the Limit asked, not the one served

    def __post_init__(self) -> None:
        self.requests: list[PageRequest] = []

    def __call__(self, request: PageRequest) -> Page:
        self.requests.append(request)
        limit = min(request.limit, self.max_limit)
        unit = request.limit if self.skip_by_requested_limit else limit
        start = {
            "page": request.offset * unit,
            "page1": max(request.offset - 1, 0) * unit,
            "record": request.offset,
            "ignore": 0,
        }[self.offset_mode]
        total = len(self.users) if self.report_total is True else (self.report_total or None)
        return list(self.users[start : start + limit]), total

    @property
    def offsets(self) -> list[int]:
        return [request.offset for request in self.requests]

    @property
    def limits(self) -> list[int]:
        return [request.limit for request in self.requests]


def users(count: int) -> list[JsonObject]:
    return [{"LOGIN_ID": f"u{i:03d}"} for i in range(count)]


def logins(rows: Sequence[JsonObject]) -> list[object]:
    return [row["LOGIN_ID"] for row in rows]


def run(pager: UserPager, serve: Callable[[PageRequest], Page]) -> list[JsonObject]:
    """The loop AtHocClient.search_users runs, without HTTP."""
    while (request := pager.next_request()) is not None:
        pager.add_page(*serve(request))
    return pager.users


@pytest.mark.parametrize(
    ("offset_mode", "offsets", "meaning"),
    [
        ("page", [0, 1, 2, 3], OffsetMeaning.PAGE_INDEX),
        ("record", [0, 1, 3, 5], OffsetMeaning.RECORD_OFFSET),
        ("page1", [0, 1, 2, 3, 4], OffsetMeaning.PAGE_NUMBER),  # Offset=1 repeats page 1, Offset=2 confirms
    ],
)
def test_the_probe_detects_what_offset_means(offset_mode: str, offsets: list[int], meaning: OffsetMeaning) -> None:
    server = FakeServer(users(7), offset_mode=offset_mode)
    pager = UserPager(page_size=2)
    assert logins(run(pager, server)) == logins(users(7))
    assert server.offsets == offsets
    assert pager.meaning is meaning
    assert pager.requests == len(offsets)
    assert pager.next_request() is None


def test_one_page_is_enough_when_it_holds_every_user() -> None:
    server = FakeServer(users(5))
    pager = UserPager(page_size=10)
    assert logins(run(pager, server)) == logins(users(5))
    assert server.offsets == [0]
    assert pager.meaning is None  # the probe was never needed


def test_pages_are_1_based_is_not_confused_with_an_empty_org() -> None:
    server = FakeServer([], offset_mode="page1")
    pager = UserPager(page_size=10)
    assert run(pager, server) == []
    assert server.offsets == [0]


@pytest.mark.parametrize("offset_mode", ["page", "record", "page1"])
def test_a_capped_limit_is_adopted_at_once(offset_mode: str) -> None:
    server = FakeServer(users(10), offset_mode=offset_mode, max_limit=3)
    pager = UserPager(page_size=10)
    assert logins(run(pager, server)) == logins(users(10))
    assert server.limits[0] == 10 and set(server.limits[1:]) == {3}
    assert pager.limit <= 3  # only a short last page may shrink it further


def test_page_size_below_one_asks_for_one() -> None:
    server = FakeServer(users(2))
    assert logins(run(UserPager(page_size=0), server)) == logins(users(2))
    assert server.limits[0] == 1


def test_without_total_users_the_empty_page_ends_the_list() -> None:
    server = FakeServer(users(7), report_total=False)
    pager = UserPager(page_size=2)
    assert logins(run(pager, server)) == logins(users(7))
    # The short last page (1 user) becomes the page size, so the next page index is 7: it answers nothing.
    assert server.offsets == [0, 1, 2, 3, 7]
    assert pager.total is None


def test_a_total_users_too_high_still_ends_on_the_empty_page() -> None:
    server = FakeServer(users(7), report_total=100)
    pager = UserPager(page_size=2)
    assert logins(run(pager, server)) == logins(users(7))
    assert pager.total == 100 and pager.seen == 7  # the client warns about the difference


def test_a_server_repeating_pages_while_users_are_missing_is_an_error() -> None:
    server = FakeServer(users(25), offset_mode="ignore")
    pager = UserPager(page_size=10)
    with pytest.raises(AtHocProtocolError) as caught:
        run(pager, server)
    assert caught.value.kind is ErrorKind.PROTOCOL and caught.value.transient
    assert "made no progress at Offset=2 with 10 of 25 users" in str(caught.value)
    assert server.offsets == [0, 1, 2]


def test_a_server_ignoring_offset_without_total_gives_its_one_page() -> None:
    server = FakeServer(users(25), offset_mode="ignore", report_total=False)
    pager = UserPager(page_size=10)
    assert logins(run(pager, server)) == logins(users(10))  # nothing says more exist
    assert server.offsets == [0, 1, 2]
    assert pager.same_page_for_every_offset == 10


def test_a_repeated_page_without_total_ends_the_list_without_the_warning_flag() -> None:
    # A record-offset server whose list ends exactly at a page: the probe's overlap is all it has.
    server = FakeServer(users(2), offset_mode="record", report_total=False)
    pager = UserPager(page_size=2)
    assert logins(run(pager, server)) == logins(users(2))
    assert pager.same_page_for_every_offset is None


def test_rows_without_login_are_counted_once_and_not_returned() -> None:
    rows: list[JsonObject] = [
        {"LOGIN_ID": "u0"},
        {"LOGIN_ID": None, "USER_ID": 7},
        {"LOGIN_ID": " ", "USER_ID": 8},
        {"LOGIN_ID": "u1"},
        {"USER_ID": 9},
        {"LOGIN_ID": "u2"},
    ]
    server = FakeServer(rows, offset_mode="record")  # the probe overlaps: each row is seen twice
    pager = UserPager(page_size=2)
    assert logins(run(pager, server)) == ["u0", "u1", "u2"]
    assert pager.login_less == 3
    assert pager.seen == pager.total == 6


def test_users_are_matched_by_login_case_insensitive_key() -> None:
    server = FakeServer([{"login_id": "a"}, {"Login_Id": "b"}])
    assert [row for row in run(UserPager(page_size=5), server)] == [{"login_id": "a"}, {"Login_Id": "b"}]


def test_a_server_inventing_users_forever_meets_the_hard_stop() -> None:
    def endless(request: PageRequest) -> Page:
        return [{"LOGIN_ID": f"n{request.offset}-{i}"} for i in range(request.limit)], None

    pager = UserPager(page_size=1)
    with pytest.raises(AtHocProtocolError) as caught:
        run(pager, endless)
    assert pager.requests == MAX_PAGES_WITHOUT_TOTAL
    assert f"paging did not finish after {MAX_PAGES_WITHOUT_TOTAL} requests" in str(caught.value)


@given(
    count=st.integers(min_value=0, max_value=40),
    page_size=st.integers(min_value=1, max_value=9),
    max_limit=st.integers(min_value=1, max_value=9),
    offset_mode=st.sampled_from(["page", "page1", "record"]),
    report_total=st.booleans(),
    skip_by_requested_limit=st.booleans(),
)
def test_every_user_exactly_once_in_order_whatever_the_server(
    count: int, page_size: int, max_limit: int, offset_mode: str, report_total: bool, skip_by_requested_limit: bool
) -> None:
    server = FakeServer(
        users(count),
        offset_mode=offset_mode,
        max_limit=max_limit,
        report_total=report_total,
        skip_by_requested_limit=skip_by_requested_limit,
    )
    pager = UserPager(page_size=page_size)
    assert logins(run(pager, server)) == logins(users(count))
    pages_needed = -(-count // min(page_size, max_limit))
    assert pager.requests <= pages_needed + 3  # the probe(s) and one empty page at most
