"""Every record of every app logger carries run_id and job_kind during a run (docs/operations.md)."""

from __future__ import annotations

import importlib
import logging
import pkgutil
from collections.abc import Iterator

import pytest

import shared
from shared import logcontext

# Every module of the package, subpackages (shared.athoc.*, shared.uploader.*) included; a __main__ runs its
# command when imported, and logs through its package's loggers anyway.
SHARED_MODULES = sorted(
    info.name
    for info in pkgutil.walk_packages(shared.__path__, prefix="shared.")
    if not info.name.endswith(".__main__")
)
FORMAT = "%(levelname)s %(name)s run=%(run_id)s kind=%(job_kind)s: %(message)s"


class Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []
        self.setFormatter(logging.Formatter(FORMAT))
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)
        self.lines.append(self.format(record))  # raises (and fails the test) if a field is missing


@pytest.fixture
def collected() -> Iterator[Collect]:
    # On the root logger, as the Functions worker and the OpenTelemetry distro attach theirs.
    handler = Collect()
    root = logging.getLogger()
    previous_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    logcontext.install()
    try:
        yield handler
    finally:
        root.removeHandler(handler)
        root.setLevel(previous_level)


def test_the_module_list_is_the_package() -> None:
    expected = {"shared.pipeline", "shared.athoc.transport", "shared.athoc.client", "shared.jobs", "shared.telemetry"}
    assert expected | {"shared.history", "shared.uploader.passes"} <= set(SHARED_MODULES)


@pytest.mark.parametrize("module_name", SHARED_MODULES)
def test_a_record_of_each_shared_module_carries_the_run(collected: Collect, module_name: str) -> None:
    module = importlib.import_module(module_name)
    logger = logging.getLogger(module.__name__)
    with logcontext.run_context("reconcile") as run_id:  # any job kind, also one this branch does not know
        logger.warning("inside a run")
    logger.warning("outside a run")

    inside, outside = collected.records[-2:]
    assert (inside.run_id, inside.job_kind) == (run_id, "reconcile")  # type: ignore[attr-defined]
    assert (outside.run_id, outside.job_kind) == ("", "")  # type: ignore[attr-defined]
    assert collected.lines[-2].endswith(f"run={run_id} kind=reconcile: inside a run")
    assert collected.lines[-1].endswith("run= kind=: outside a run")


def test_functions_loggers_and_worker_threads_carry_the_run(collected: Collect) -> None:
    import contextvars
    import threading

    with logcontext.run_context("process") as run_id:
        logging.getLogger("functions.ingest").info("from a function")
        context = contextvars.copy_context()
        thread = threading.Thread(target=context.run, args=(logging.getLogger("shared.storage").info, "io"))
        thread.start()
        thread.join()
    assert [r.run_id for r in collected.records[-2:]] == [run_id, run_id]  # type: ignore[attr-defined]


def test_the_summary_line_keeps_its_fields_with_the_factory_installed(collected: Collect) -> None:
    log = logging.getLogger("shared.jobs")
    with logcontext.run_context("cleanup") as run_id:
        logcontext.log_run_summary(log, "cleanup", "success", "cleanup success", cleared=3)
    record = collected.records[-1]
    assert record.run_id == run_id and record.cleared == 3  # type: ignore[attr-defined]
    assert f"run_id={run_id}" in record.getMessage() and "job_kind=cleanup" in record.getMessage()


def test_install_is_idempotent() -> None:
    logcontext.install()
    factory = logging.getLogRecordFactory()
    logcontext.install()
    assert logging.getLogRecordFactory() is factory
