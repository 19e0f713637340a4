"""A run id that ties a trigger, its batches and the AtHoc requests together in the logs.

While a run is active every log record created in this process carries `run_id` and `job_kind`
(empty strings outside a run, so a formatter with `%(run_id)s` never raises). They are put on the
record when it is made, by a log record factory, rather than by a logger or handler filter: Python
applies a logger's filters only to records logged on that very logger (never to `shared.pipeline`'s
records for a filter on `shared`), and handler filters would have to be attached to every handler,
including those the Functions worker and the OpenTelemetry distro add after us. A record's attributes
beyond the standard ones become custom dimensions in Application Insights (OpenTelemetry log
attributes), so one Kusto query finds everything a run did.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import uuid
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from typing import Any

_run_id: ContextVar[str] = ContextVar("bobo_run_id", default="")
_job_kind: ContextVar[str] = ContextVar("bobo_job_kind", default="")


# The attributes the factory adds; `extra` fields with these names are dropped by log_run_summary
# (logging refuses an `extra` key that is already an attribute of the record).
RUN_FIELDS = ("run_id", "job_kind")


class _RunRecordFactory:
    """Wraps the process's record factory: the record as before, plus the run id and job kind."""

    def __init__(self, wrapped: Callable[..., logging.LogRecord]) -> None:
        self.wrapped = wrapped

    def __call__(self, *args: Any, **kwargs: Any) -> logging.LogRecord:
        record = self.wrapped(*args, **kwargs)
        record.run_id = _run_id.get()
        record.job_kind = _job_kind.get()
        return record


def new_run_id() -> str:
    return uuid.uuid4().hex[:12]


def current_run_id() -> str:
    return _run_id.get()


@contextlib.contextmanager
def run_context(job_kind: str, run_id: str | None = None) -> Iterator[str]:
    run_id = run_id or new_run_id()
    run_token = _run_id.set(run_id)
    kind_token = _job_kind.set(job_kind)
    try:
        yield run_id
    finally:
        _run_id.reset(run_token)
        _job_kind.reset(kind_token)


def install() -> None:
    """Put `run_id` and `job_kind` on every record from now on (idempotent; the Functions and CLI paths call it)."""
    with _install_lock:
        current = logging.getLogRecordFactory()
        if not isinstance(current, _RunRecordFactory):
            logging.setLogRecordFactory(_RunRecordFactory(current))


_install_lock = threading.Lock()


def log_run_summary(
    logger: logging.Logger, job_kind: str, outcome: str, text: str, level: int = logging.INFO, **fields: object
) -> None:
    """One summary line per run, queryable in App Insights whether or not custom dimensions arrive.

    The fields go both into `extra` (custom dimensions where the worker forwards them) and, as
    `key=value` pairs, into the message itself, which every Functions logging path keeps.
    """
    fields = {"job_kind": job_kind, "outcome": outcome, "run_id": _run_id.get(), **fields}
    pairs = " ".join(f"{key}={_plain(value)}" for key, value in fields.items())
    extra = {key: value for key, value in fields.items() if key not in RUN_FIELDS}
    if not isinstance(logging.getLogRecordFactory(), _RunRecordFactory):
        extra.update({key: fields[key] for key in RUN_FIELDS})  # install() not called: say them here
    logger.log(level, "%s | %s", text, pairs, extra=extra)


def _plain(value: object) -> str:
    text = str(value)
    return text if text and " " not in text and "=" not in text else '"' + text.replace('"', "'") + '"'


def brief_error(error: BaseException) -> str:
    """An error in one line, without request headers (Azure errors can carry SAS tokens in them)."""
    code = getattr(error, "error_code", None) or getattr(error, "status_code", None)
    text = str(error).splitlines()[0] if str(error) else error.__class__.__name__
    return f"{code}: {text}"[:300] if code else text[:300]
