"""Latest event per employee, staleness, duty values and the update plan (docs/design.md#latest-wins)."""

from __future__ import annotations

import random
from collections import defaultdict
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.bobo_csv import Action, DutyEvent
from shared.decisions import (
    EventKey,
    Plan,
    SourcedEvent,
    Watermark,
    duty_value,
    is_stale,
    latest_per_employee,
    plan_updates,
)

T0 = datetime(2025, 10, 22, 7, 41, 42)
MODIFIED = datetime(2025, 10, 22, 6, 42, tzinfo=UTC)
DEFAULT_FORMAT = "%d/%m/%Y %H:%M:%S"


def event(
    employee: str = "123",
    action: Action = Action.BOOK_ON,
    at: datetime = T0,
    created: datetime | None = T0,
    row: int = 1,
) -> DutyEvent:
    return DutyEvent(row, employee, employee.zfill(5), action, at, created)


def sourced(duty: DutyEvent, name: str = "a.csv", modified: datetime = MODIFIED) -> SourcedEvent:
    return SourcedEvent(duty, name, modified)


# --- ordering within a batch --------------------------------------------------------------------


def test_key_order_follows_the_contract() -> None:
    base = sourced(event())
    later_event_time = sourced(event(at=T0 + timedelta(seconds=1), created=T0 - timedelta(days=1)))
    later_created = sourced(event(created=T0 + timedelta(seconds=1)), modified=MODIFIED - timedelta(days=1))
    later_file = sourced(event(row=1), name="a.csv", modified=MODIFIED + timedelta(seconds=1))
    later_name = sourced(event(row=1), name="b.csv")
    later_row = sourced(event(row=2))
    # Each later field wins although every field after it says the opposite.
    assert base.key < later_row.key < later_name.key < later_file.key
    assert later_file.key < later_created.key < later_event_time.key
    assert sourced(event(row=9), name="z.csv").key < later_file.key


def test_missing_created_sorts_as_the_event_time() -> None:
    simple = sourced(event(created=None))
    assert simple.key.created == T0
    assert simple.key < sourced(event(created=T0 + timedelta(seconds=1))).key
    assert simple.key > sourced(event(created=T0 - timedelta(seconds=1))).key


def test_file_modified_must_be_aware() -> None:
    with pytest.raises(ValueError, match="aware"):
        SourcedEvent(event(), "a.csv", datetime(2025, 1, 1))


def test_latest_per_employee_picks_one_event_per_employee() -> None:
    first = sourced(event("1", Action.BOOK_ON, T0))
    second = sourced(event("1", Action.BOOK_OFF, T0 + timedelta(minutes=5)))
    other = sourced(event("2", Action.BOOK_ON, T0 - timedelta(hours=1)))
    assert latest_per_employee([second, other, first]) == {"1": second, "2": other}
    assert latest_per_employee([]) == {}


def test_equal_keys_keep_the_first() -> None:
    one = sourced(event("1", Action.BOOK_ON))
    same_row_again = sourced(event("1", Action.BOOK_ON))
    assert latest_per_employee([one, same_row_again])["1"] is one


# Small domains so that ties on the leading key fields are common and the later fields must decide.
_SMALL_TIMES = st.integers(0, 3).map(lambda n: T0 + timedelta(seconds=n))


@st.composite
def sourced_events(draw: st.DrawFn) -> SourcedEvent:
    duty = DutyEvent(
        row_number=draw(st.integers(1, 3)),
        employee_id=draw(st.sampled_from(["1", "2", "3"])),
        raw_employee_id="x",
        action=draw(st.sampled_from(Action)),
        event_time=draw(_SMALL_TIMES),
        created=draw(st.none() | _SMALL_TIMES),
    )
    modified = MODIFIED + timedelta(seconds=draw(st.integers(0, 2)))
    return SourcedEvent(duty, draw(st.sampled_from(["a.csv", "b.csv"])), modified)


@settings(max_examples=200)
@given(st.lists(sourced_events(), max_size=25), st.randoms(use_true_random=False))
def test_latest_is_the_maximum_key_whatever_the_input_order(events: list[SourcedEvent], rng: random.Random) -> None:
    groups: dict[str, list[SourcedEvent]] = defaultdict(list)
    for item in events:
        groups[item.event.employee_id].append(item)
    expected_keys = {employee: max(item.key for item in items) for employee, items in groups.items()}

    result = latest_per_employee(events)
    assert {employee: item.key for employee, item in result.items()} == expected_keys
    shuffled = list(events)
    rng.shuffle(shuffled)
    assert {employee: item.key for employee, item in latest_per_employee(shuffled).items()} == expected_keys
    assert latest_per_employee(reversed(events)).keys() == result.keys()


def test_superseded_events_are_reported_once_each() -> None:
    first = sourced(event("1", Action.BOOK_ON, T0))
    second = sourced(event("1", Action.BOOK_OFF, T0 + timedelta(minutes=5)))
    duplicate = sourced(event("1", Action.BOOK_OFF, T0 + timedelta(minutes=5)))
    other = sourced(event("2", Action.BOOK_ON, T0))
    lost: list[SourcedEvent] = []
    winners = latest_per_employee([first, second, other, duplicate], on_superseded=lost.append)
    assert winners == {"1": second, "2": other}
    # The displaced winner and the later duplicate lose; the other employee's only event does not.
    assert lost == [first, duplicate]


@settings(max_examples=200)
@given(st.lists(sourced_events(), max_size=25))
def test_every_event_is_either_kept_or_superseded(events: list[SourcedEvent]) -> None:
    lost: list[SourcedEvent] = []
    winners = latest_per_employee(events, on_superseded=lost.append)
    assert winners == latest_per_employee(events)  # the callback changes nothing
    assert len(lost) + len(winners) == len(events)
    kept_ids = {id(item) for item in winners.values()}
    assert all(id(item) not in kept_ids for item in lost)
    for item in lost:
        assert item.key <= winners[item.event.employee_id].key


def test_key_is_an_event_key() -> None:
    key = sourced(event(row=4), name="n.csv").key
    assert key == EventKey(T0, T0, MODIFIED, "n.csv", 4)


# --- staleness across batches -----------------------------------------------------------------------


def test_no_watermark_is_never_stale() -> None:
    assert not is_stale(event(), None)


@pytest.mark.parametrize(
    ("at", "created", "stale"),
    [
        (T0, T0, True),  # equal: already applied
        (T0 + timedelta(seconds=1), T0, False),  # newer event time
        (T0 - timedelta(seconds=1), T0 + timedelta(days=1), True),  # older event time, whatever its creation
        (T0, T0 + timedelta(seconds=1), False),  # same event time, created later
        (T0, T0 - timedelta(seconds=1), True),  # same event time, created earlier
        (T0, None, True),  # no created: counts as the event time, equal to the watermark's created
    ],
)
def test_staleness_against_a_watermark(at: datetime, created: datetime | None, stale: bool) -> None:
    watermark = Watermark(T0, T0, Action.BOOK_ON)
    assert is_stale(event(at=at, created=created), watermark) is stale


def test_watermark_without_created_compares_as_its_event_time() -> None:
    watermark = Watermark(T0, None, Action.BOOK_OFF)
    assert is_stale(event(created=T0), watermark)
    assert not is_stale(event(created=T0 + timedelta(seconds=1)), watermark)


def test_the_action_does_not_matter_for_staleness() -> None:
    watermark = Watermark(T0, T0, Action.BOOK_ON)
    assert is_stale(event(action=Action.BOOK_OFF), watermark)


_MOMENTS = st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1))


@given(_MOMENTS, st.none() | _MOMENTS, _MOMENTS, st.none() | _MOMENTS, st.sampled_from(Action))
def test_staleness_is_the_pair_comparison(
    at: datetime, created: datetime | None, mark_at: datetime, mark_created: datetime | None, action: Action
) -> None:
    watermark = Watermark(mark_at, mark_created, action)
    expected = (at, created or at) <= (mark_at, mark_created or mark_at)
    assert is_stale(event(at=at, created=created), watermark) is expected
    # An event applied once is stale for ever after.
    assert is_stale(event(at=at, created=created), Watermark.from_event(event(at=at, created=created)))


@given(_MOMENTS, st.none() | _MOMENTS, st.sampled_from(Action), st.booleans())
def test_watermark_text_round_trips(at: datetime, created: datetime | None, action: Action, confirmed: bool) -> None:
    watermark = Watermark(at, created, action, confirmed)
    text = watermark.to_text()
    assert Watermark.from_text(text) == watermark
    assert text.endswith(action.value if confirmed else f"{action.value}|unconfirmed")


@given(_MOMENTS, st.none() | _MOMENTS, _MOMENTS, st.none() | _MOMENTS, st.sampled_from(Action))
def test_an_unconfirmed_watermark_blocks_only_strictly_older_events(
    at: datetime, created: datetime | None, mark_at: datetime, mark_created: datetime | None, action: Action
) -> None:
    watermark = Watermark(mark_at, mark_created, action, confirmed=False)
    expected = (at, created or at) < (mark_at, mark_created or mark_at)
    assert is_stale(event(at=at, created=created), watermark) is expected


def test_the_event_of_a_given_up_file_is_not_stale_against_its_own_unconfirmed_watermark() -> None:
    given_up = event(at=T0, created=T0)
    unconfirmed = Watermark.from_event(given_up, confirmed=False)
    assert not is_stale(given_up, unconfirmed)  # retry-failed sends it again
    assert is_stale(event(at=T0 - timedelta(minutes=1)), unconfirmed)  # an older one could undo it
    assert is_stale(given_up, Watermark.from_event(given_up))  # once confirmed, never again


def test_watermark_text_is_compact_and_readable() -> None:
    assert Watermark(T0, T0, Action.BOOK_ON).to_text() == "2025-10-22T07:41:42|2025-10-22T07:41:42|BON"
    assert Watermark(T0, None, Action.BOOK_OFF).to_text() == "2025-10-22T07:41:42||BOF"


@pytest.mark.parametrize(
    "text",
    ["", "2025-10-22T07:41:42|BON", "x|y|BON", "2025-10-22T07:41:42||XXX", "a|b|c|d", "2025-10-22T07:41:42||BON|maybe"],
)
def test_watermark_from_bad_text_raises(text: str) -> None:
    with pytest.raises(ValueError):
        Watermark.from_text(text)


def test_watermark_times_are_naive() -> None:
    with pytest.raises(ValueError, match="naive"):
        Watermark(datetime(2025, 1, 1, tzinfo=UTC), None, Action.BOOK_ON)


# --- duty values ------------------------------------------------------------------------------------


def test_book_on_writes_the_recorded_time_with_the_default_format() -> None:
    assert duty_value(event(action=Action.BOOK_ON), DEFAULT_FORMAT) == "22/10/2025 07:41:42"


def test_book_on_with_a_custom_format() -> None:
    assert duty_value(event(action=Action.BOOK_ON), "%Y-%m-%dT%H:%M") == "2025-10-22T07:41"


@pytest.mark.parametrize("fmt", [DEFAULT_FORMAT, "%Y-%m-%dT%H:%M"])
def test_book_off_clears_the_field(fmt: str) -> None:
    assert duty_value(event(action=Action.BOOK_OFF), fmt) == ""


@given(_MOMENTS.map(lambda moment: moment.replace(microsecond=0)))
def test_book_on_value_parses_back_to_the_event_time(at: datetime) -> None:
    value = duty_value(event(at=at, created=None), DEFAULT_FORMAT)
    assert datetime.strptime(value, DEFAULT_FORMAT) == at


# --- the plan ---------------------------------------------------------------------------------------


def test_plan_splits_winners() -> None:
    winners = {
        "1": sourced(event("1", Action.BOOK_ON, T0)),
        "2": sourced(event("2", Action.BOOK_OFF, T0)),
        "3": sourced(event("3", Action.BOOK_ON, T0)),
        "4": sourced(event("4", Action.BOOK_ON, T0)),
    }
    mappings = {"1": "zed@example", "2": "amy@example", "3": "bob@example"}
    watermarks = {
        "3": Watermark(T0, T0, Action.BOOK_ON),
        "1": Watermark(T0 - timedelta(hours=1), None, Action.BOOK_OFF),
    }

    plan = plan_updates(winners, mappings, watermarks, DEFAULT_FORMAT)

    assert [(u.login, u.employee_id, u.value) for u in plan.updates] == [
        ("amy@example", "2", ""),
        ("zed@example", "1", "22/10/2025 07:41:42"),
    ]
    assert plan.updates[0].source is winners["2"]
    assert plan.stale == [winners["3"]]
    assert plan.unmapped == [winners["4"]]
    assert plan.superseded == []


def test_stale_is_decided_before_the_mapping() -> None:
    winners = {"9": sourced(event("9"))}
    plan = plan_updates(winners, {}, {"9": Watermark(T0, T0, Action.BOOK_ON)}, DEFAULT_FORMAT)
    assert (plan.stale, plan.unmapped) == ([winners["9"]], [])


def test_two_employees_on_one_login_send_one_row() -> None:
    winners = {
        "1": sourced(event("1", Action.BOOK_ON, T0 + timedelta(minutes=1))),
        "2": sourced(event("2", Action.BOOK_OFF, T0)),
    }
    plan = plan_updates(winners, {"1": "Same@Example", "2": "same@example"}, {}, DEFAULT_FORMAT)
    assert [(u.employee_id, u.login) for u in plan.updates] == [("1", "Same@Example")]
    assert plan.superseded == [winners["2"]]


@given(
    st.lists(sourced_events(), max_size=20),
    st.dictionaries(st.sampled_from(["1", "2", "3"]), st.sampled_from(["a", "b", "c", "d"])),
    st.dictionaries(
        st.sampled_from(["1", "2", "3"]),
        st.builds(Watermark, _SMALL_TIMES, st.none() | _SMALL_TIMES, st.sampled_from(Action)),
    ),
)
def test_every_winner_lands_in_exactly_one_list(
    events: list[SourcedEvent], mappings: dict[str, str], watermarks: dict[str, Watermark]
) -> None:
    winners = latest_per_employee(events)
    plan: Plan = plan_updates(winners, mappings, watermarks, DEFAULT_FORMAT)
    placed = [u.source for u in plan.updates] + plan.stale + plan.unmapped + plan.superseded
    assert sorted(item.event.employee_id for item in placed) == sorted(winners)
    logins = [u.login for u in plan.updates]
    assert logins == sorted(logins) and len(set(logins)) == len(logins)
    for update in plan.updates:
        assert mappings[update.employee_id] == update.login
        assert not is_stale(update.source.event, watermarks.get(update.employee_id))
        assert update.value == duty_value(update.source.event, DEFAULT_FORMAT)
    for item in plan.stale:
        assert is_stale(item.event, watermarks.get(item.event.employee_id))
    for item in plan.unmapped:
        assert item.event.employee_id not in mappings
