"""pytest's hooks for this suite; the shared fixtures live in tests/helpers.py (imported here so every test sees them).

Each test gets its own containers and table prefix inside the one Azurite, so tests never see each
other's files or state, and no test touches the process environment unless it says so.
"""

from __future__ import annotations

import os

import pytest

from tests.helpers import (  # noqa: F401 - fixtures are found by name in this module
    athoc_sim,
    azurite,
    make_runtime,
    make_settings,
    make_test_env,
    sim_factory,
)

# Longer cases: skipped by a plain local `pytest`, always run by `./dev test` (and so by CI).
OPT_IN_MARKERS = ("slow", "chaos", "browser")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--all", action="store_true", help=f"also run the {', '.join(OPT_IN_MARKERS)} tests (./dev test always does)"
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # Asked for by marker (-m slow), by --all, or in CI: everything selected runs.
    if config.getoption("--all") or config.option.markexpr or os.environ.get("CI"):
        return
    skip = pytest.mark.skip(reason="opt-in: run with --all or -m MARKER (./dev test runs everything)")
    for item in items:
        if any(item.get_closest_marker(name) for name in OPT_IN_MARKERS):
            item.add_marker(skip)
