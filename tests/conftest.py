"""Shared fixtures: a real Azurite for the session, a real AtHoc simulator per test, isolated settings.

Each test gets its own containers and table prefix inside the one Azurite, so tests never see each
other's files or state, and no test touches the process environment unless it says so.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from shared.settings import Settings
from tools.azurite import Azurite, start_azurite

SIM_CREDENTIALS = {
    "ATHOC_ORG_CODE": "DEMO",
    "ATHOC_CLIENT_ID": "bobo-sync",
    "ATHOC_CLIENT_SECRET": "sim-client-secret",
    "ATHOC_USERNAME": "svc-bobo",
    "ATHOC_PASSWORD": "sim-password",
}


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


@pytest.fixture(scope="session")
def azurite() -> Iterator[Azurite]:
    instance = start_azurite()
    try:
        yield instance
    finally:
        instance.cleanup()


@pytest.fixture
def athoc_sim() -> Iterator[Any]:
    from tools.athoc_sim import AtHocSimulator

    sim = AtHocSimulator().start()
    try:
        yield sim
    finally:
        sim.stop()


def make_env(connection_string: str, athoc_url: str, **overrides: str) -> dict[str, str]:
    """A complete, isolated environment: unique containers and table prefix per call."""
    tag = uuid.uuid4().hex[:8]
    env = {
        "ATHOC_SERVER_URL": athoc_url,
        **SIM_CREDENTIALS,
        "BOBO_STORAGE": connection_string,
        "BOBO_INCOMING_CONTAINER": f"in-{tag}",
        "BOBO_PROCESSED_CONTAINER": f"done-{tag}",
        "BOBO_FAILED_CONTAINER": f"failed-{tag}",
        "BOBO_REJECTS_CONTAINER": f"rejects-{tag}",
        "BOBO_TABLE_PREFIX": f"t{tag}",
        "BOBO_BATCH_WINDOW_SECONDS": "0",
        "ATHOC_CALL_BUDGET_SECONDS": "20",
    }
    env.update(overrides)
    return env


@pytest.fixture
def make_settings(azurite: Azurite, athoc_sim: Any) -> Callable[..., Settings]:
    def build(**overrides: str) -> Settings:
        return Settings.from_env(make_env(azurite.connection_string, athoc_sim.url, **overrides))

    return build


@pytest.fixture
def make_test_env(azurite: Azurite, athoc_sim: Any) -> Callable[..., dict[str, str]]:
    """The environment of an isolated deployment, for handler tests and worker processes."""

    def build(**overrides: str) -> dict[str, str]:
        return make_env(azurite.connection_string, athoc_sim.url, **overrides)

    return build


@pytest.fixture
def make_runtime(make_settings: Callable[..., Settings]) -> Callable[..., Any]:
    from shared.runtime import Runtime

    def build(**overrides: str) -> Runtime:
        runtime = Runtime(make_settings(**overrides))
        runtime.ensure_ready()
        return runtime

    return build
