"""What the tests share: the fixtures (a real Azurite for the session, a real AtHoc simulator per test, isolated
settings and runtimes), and helpers for seeding AtHoc users and mappings, uploading files and reading outcomes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from bench.common import make_env as bench_env
from shared.records import JobKind, MappingEntry, Outcome
from shared.runtime import Runtime
from shared.settings import Settings
from tools.athoc_sim import AtHocSimulator
from tools.azurite import Azurite, start_azurite

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def azurite() -> Iterator[Azurite]:
    instance = start_azurite()
    try:
        yield instance
    finally:
        instance.cleanup()


@pytest.fixture
def athoc_sim() -> Iterator[AtHocSimulator]:
    sim = AtHocSimulator().start()
    try:
        yield sim
    finally:
        sim.stop()


def make_env(connection_string: str, athoc_url: str, **overrides: str) -> dict[str, str]:
    """A complete, isolated environment (unique containers and table prefix per call), as the benchmarks
    build it, with no batch window and a short AtHoc budget so tests stay quick."""
    quick = {"BOBO_BATCH_WINDOW_SECONDS": "0", "ATHOC_CALL_BUDGET_SECONDS": "20", "LOG_LEVEL": "INFO"}
    return bench_env(connection_string, athoc_url, **{**quick, **overrides})


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
def make_runtime(make_settings: Callable[..., Settings]) -> Callable[..., Runtime]:
    def build(**overrides: str) -> Runtime:
        runtime = Runtime(make_settings(**overrides))
        runtime.ensure_ready()
        return runtime

    return build


@pytest.fixture
def sim_factory(azurite: Azurite) -> Iterator[Callable[..., tuple[AtHocSimulator, Runtime]]]:
    """Simulators configured differently from the default fixture, each with its own isolated runtime:
    `sim_factory(SimulatorClass, env={...settings...}, **simulator_options)`."""
    started: list[AtHocSimulator] = []

    def build(cls: type[AtHocSimulator] = AtHocSimulator, **sim_options: Any) -> tuple[AtHocSimulator, Runtime]:
        overrides = sim_options.pop("env", {})
        sim = cls(**sim_options).start()
        started.append(sim)
        runtime = Runtime(Settings.from_env(make_env(azurite.connection_string, sim.url, **overrides)))
        runtime.ensure_ready()
        return sim, runtime

    yield build
    for sim in started:
        sim.stop()


def login_of(employee: str) -> str:
    return f"user{int(employee):05d}@force.example"


def seed_users(sim: Any, runtime: Runtime, employees: Iterable[str], *, mapped: bool = True) -> None:
    """AtHoc users with collar ids, and (unless `mapped` is False) the mapping rows a sync would write."""
    employees = list(employees)
    sim.add_users([{"LOGIN_ID": login_of(e), "Collar-Number": str(int(e))} for e in employees])
    if mapped:
        runtime.ensure_ready()
        runtime.state.apply_mapping_changes(
            [MappingEntry(str(int(e)), login_of(e), str(int(e))) for e in employees], []
        )
        runtime.state.record_job(JobKind.SYNC_MAPPINGS, Outcome.SUCCESS, new_version=True)


def upload(runtime: Runtime, name: str, data: bytes | str) -> None:
    runtime.ensure_ready()
    body = data.encode("utf-8") if isinstance(data, str) else data
    runtime.storage.write_blob(runtime.settings.incoming_container, name, body, overwrite=True)


def names_in(runtime: Runtime, container: str) -> list[str]:
    # Every blob, unfiltered: the product keeps nothing of its own (no lock blob) in these containers.
    return sorted(b.name for b in runtime.storage.container(container).list_blobs())


def where(runtime: Runtime) -> dict[str, list[str]]:
    s = runtime.settings
    return {
        "incoming": names_in(runtime, s.incoming_container),
        "processed": names_in(runtime, s.processed_container),
        "failed": names_in(runtime, s.failed_container),
        "rejects": names_in(runtime, s.rejects_container),
    }


def read_blob(runtime: Runtime, container: str, name: str) -> bytes:
    return runtime.storage.container(container).download_blob(name).readall()


def blob_metadata(runtime: Runtime, container: str, name: str) -> dict[str, str]:
    return dict(runtime.storage.container(container).get_blob_client(name).get_blob_properties().metadata)


def bon(employee: str, when: str, created: str | None = None) -> str:
    """A 10-column BON row; `when` is YYYYMMDDHHMMSS."""
    return f"BON,{employee},P{employee},{when[:8]},{when[8:]},{created or when},3,51.501,-0.141,12.5"


def bof(employee: str, when: str, created: str | None = None) -> str:
    return f"BOF,{employee},P{employee},{when[:8]},{when[8:]},{created or when},0,0,0,0"


def csv_of(*rows: str) -> str:
    return "\n".join(rows) + "\n"


def settings_env(settings_env_map: Mapping[str, str]) -> dict[str, str]:
    """A child process environment: this one plus the test's settings, and the repo on the path."""
    env = dict(os.environ)
    env.update(settings_env_map)
    env["PYTHONPATH"] = str(ROOT)
    return env


def python() -> str:
    return sys.executable


def run_cli(env: Mapping[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """`python -m shared.cli ARGS` from the repository root, as an operator runs it, with `env`'s settings."""
    return subprocess.run(
        [python(), "-m", "shared.cli", *args],
        cwd=ROOT,
        env=settings_env(env),
        capture_output=True,
        text=True,
        timeout=120,
    )


def model_binding_data(settings: Settings, name: str) -> SimpleNamespace:
    """What the Functions host sends the worker for an SDK-type blob trigger binding."""
    content = {"Connection": "BOBO_STORAGE", "ContainerName": settings.incoming_container, "BlobName": name}
    return SimpleNamespace(
        version="1.0", source="AzureStorageBlobs", content_type="application/json", content=json.dumps(content)
    )
