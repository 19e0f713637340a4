"""Paging through users/search/basic without knowing what the server's `Offset` means (pure, no HTTP).

The first page is asked at Offset=0, then the probe Offset=1: overlapping the first page means record
offsets, repeating it exactly means 1-based page numbers (confirmed by Offset=2), no overlap means page
indexes. A page shorter than the Limit asked while more users may exist means the server caps Limit:
later pages ask for the size it gives, so that page indexes count pages of the size the server uses.
Paging stops on an empty page, on reaching TotalUsers, and on a page that adds nothing new (which raises
when TotalUsers says users are missing: a partial list is never returned as complete).
"""

from __future__ import annotations

import enum
import math
from collections.abc import Sequence
from dataclasses import dataclass

from shared.athoc.errors import AtHocProtocolError
from shared.athoc.users import JsonObject, login_of, row_fingerprint

SEARCH_KIND = "users/search/basic"
# Hard stop for paging against a server without TotalUsers that keeps inventing users.
MAX_PAGES_WITHOUT_TOTAL = 100_000


class OffsetMeaning(enum.Enum):
    """What the server reads `Offset` as; the value is how the summary log line names it."""

    PAGE_INDEX = "page index"
    PAGE_NUMBER = "1-based page number"
    RECORD_OFFSET = "record offset"


class _Stage(enum.Enum):
    FIRST = "first"  # Offset=0
    PROBE = "probe"  # Offset=1: tells record offsets from page indexes
    PROBE_AGAIN = "probe again"  # Offset=2 after Offset=1 repeated the first page: 1-based page numbers?
    WALK = "walk"  # the meaning is known


@dataclass(frozen=True)
class PageRequest:
    offset: int
    limit: int


def page_start(meaning: OffsetMeaning | None, offset: int, limit: int) -> int:
    """Index in the server's list of the first row answered for `offset` under `meaning`."""
    if meaning is OffsetMeaning.RECORD_OFFSET:
        return offset
    if meaning is OffsetMeaning.PAGE_NUMBER:
        return (offset - 1) * limit
    return offset * limit


def next_offset(meaning: OffsetMeaning | None, position: int, limit: int) -> int:
    """The Offset whose page holds the row at index `position` (page indexes round down: the overlap with
    what was read is deduplicated, nothing is skipped)."""
    if meaning is OffsetMeaning.RECORD_OFFSET:
        return position
    if meaning is OffsetMeaning.PAGE_NUMBER:
        return position // limit + 1
    return position // limit


class UserPager:
    """Decides which page to ask for next and collects every user once, by LOGIN_ID, in server order.

    Use: `while (page := pager.next_request()) is not None: pager.add_page(rows, total_users)`.
    Rows without LOGIN_ID are not returned but counted (once each, across pages) as `login_less`.
    `add_page` raises AtHocProtocolError when the server repeats pages while TotalUsers says more exist,
    or when paging does not finish within about twice the pages TotalUsers needs (the hard stop).
    """

    def __init__(self, page_size: int):
        self.limit = max(1, page_size)  # the Limit asked next (the server's cap once it showed one)
        self.meaning: OffsetMeaning | None = None  # None until the probe told (or when one page was all)
        self.total: int | None = None  # the latest TotalUsers the server reported
        self.requests = 0
        # Set when Offset 0, 1 and 2 all answered the same rows (this many) and there is no TotalUsers: the
        # server may ignore Offset, and that one page is taken as the whole list.
        self.same_page_for_every_offset: int | None = None
        self._users: dict[str, JsonObject] = {}
        self._login_less: set[str] = set()  # fingerprints of distinct rows without LOGIN_ID
        self._stage = _Stage.FIRST
        self._first_page: list[str] = []
        self._offset = 0
        self._done = False

    @property
    def users(self) -> list[JsonObject]:
        return list(self._users.values())

    @property
    def login_less(self) -> int:
        return len(self._login_less)

    @property
    def seen(self) -> int:
        """Distinct rows listed so far, with and without LOGIN_ID (what TotalUsers counts)."""
        return len(self._users) + len(self._login_less)

    def next_request(self) -> PageRequest | None:
        """The page to ask for next; None when the list is complete."""
        return None if self._done else PageRequest(self._offset, self.limit)

    def add_page(self, rows: Sequence[JsonObject], total_users: int | None) -> None:
        """Take the answer to the latest next_request() and decide what comes next."""
        asked = self.limit
        self.requests += 1
        if total_users is not None:
            self.total = total_users
        identities, new = self._collect(rows)
        if not rows:
            self._done = True
            return
        if self._stage is _Stage.PROBE and identities == self._first_page:
            # The first page again: Offset may be a 1-based page number (or ignored); Offset=2 tells.
            self._stage, self._offset = _Stage.PROBE_AGAIN, 2
            return
        position = self._start_of(identities, asked) + len(rows)  # index of the first user not read yet
        if self.total is not None and (self.seen >= self.total or position >= self.total):
            self._done = True
            return
        if new == 0:
            self._stop_without_progress(len(rows))
            return
        if len(rows) < asked:
            self.limit = len(rows)  # fewer than asked while more may exist: the server caps Limit
        if self._stage is _Stage.FIRST:
            self._stage, self._offset = _Stage.PROBE, 1
        else:
            self._stage, self._offset = _Stage.WALK, next_offset(self.meaning, position, self.limit)
        self._check_hard_stop()

    def _collect(self, rows: Sequence[JsonObject]) -> tuple[list[str], int]:
        """Each row's identity (its login, or a fingerprint for rows without one) and how many are new."""
        identities: list[str] = []
        new = 0
        for row in rows:
            login = login_of(row)
            if login is None:
                identity = "\x00" + row_fingerprint(row)  # cannot collide with a login
                if identity not in self._login_less:
                    self._login_less.add(identity)
                    new += 1
            else:
                identity = login
                if login not in self._users:
                    self._users[login] = row
                    new += 1
            identities.append(identity)
        return identities, new

    def _start_of(self, identities: list[str], asked: int) -> int:
        """Index in the server's list of this page's first row; settles the Offset meaning during the probe."""
        if self._stage is _Stage.FIRST:
            self._first_page = identities
            return 0
        if self._stage is _Stage.PROBE:
            # Record offsets make the probe repeat all but one user of the first page; page indexes
            # repeat none (or a few, if users were added while paging): judge by the size of the overlap.
            overlap = len(set(self._first_page).intersection(identities))
            records = overlap >= max(1.0, (min(len(identities), len(self._first_page)) - 1) / 2)
            self.meaning = OffsetMeaning.RECORD_OFFSET if records else OffsetMeaning.PAGE_INDEX
            return 1 if records else asked
        if self._stage is _Stage.PROBE_AGAIN:
            self.meaning = OffsetMeaning.PAGE_NUMBER
            return asked
        return page_start(self.meaning, self._offset, asked)

    def _stop_without_progress(self, page_rows: int) -> None:
        """A page with nothing new: the end when there is no TotalUsers to compare with, else an error."""
        if self.total is None:
            if self._stage is _Stage.PROBE_AGAIN:
                self.same_page_for_every_offset = page_rows
            self._done = True
            return
        raise AtHocProtocolError(
            f"{SEARCH_KIND}: paging made no progress at Offset={self._offset} with {self.seen} of "
            f"{self.total} users (the server repeats pages)"
        )

    def _check_hard_stop(self) -> None:
        max_requests = MAX_PAGES_WITHOUT_TOTAL if self.total is None else 2 * math.ceil(self.total / self.limit) + 5
        if self.requests >= max_requests:
            raise AtHocProtocolError(
                f"{SEARCH_KIND}: paging did not finish after {self.requests} requests "
                f"({len(self._users)} of {self.total} users)"
            )
