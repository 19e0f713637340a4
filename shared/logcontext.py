"""A run id that ties a trigger, its batches and the AtHoc requests together in the logs.

The Functions Python worker sends a record's `extra` fields to Application Insights as custom
dimensions; this filter adds `run_id` and `job_kind` to every record of the app's loggers while a run
is active, so one Kusto query finds everything a run did.
"""

from __future__ import annotations

import contextlib
import logging
import uuid
from collections.abc import Iterator
from contextvars import ContextVar

_run_id: ContextVar[str] = ContextVar("bobo_run_id", default="")
_job_kind: ContextVar[str] = ContextVar("bobo_job_kind", default="")


class RunContextFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "run_id"):
            record.run_id = _run_id.get()
        if not hasattr(record, "job_kind"):
            record.job_kind = _job_kind.get()
        return True


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
    """Attach the filter to the app's top-level loggers (idempotent)."""
    for name in ("shared", "functions"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, RunContextFilter) for f in logger.filters):
            logger.addFilter(RunContextFilter())


def log_run_summary(
    logger: logging.Logger, job_kind: str, outcome: str, text: str, level: int = logging.INFO, **fields: object
) -> None:
    """One summary line per run, queryable in App Insights whether or not custom dimensions arrive.

    The fields go both into `extra` (custom dimensions where the worker forwards them) and, as
    `key=value` pairs, into the message itself, which every Functions logging path keeps.
    """
    fields = {"job_kind": job_kind, "outcome": outcome, "run_id": _run_id.get(), **fields}
    pairs = " ".join(f"{key}={_plain(value)}" for key, value in fields.items())
    logger.log(level, "%s | %s", text, pairs, extra=fields)


def _plain(value: object) -> str:
    text = str(value)
    return text if text and " " not in text and "=" not in text else '"' + text.replace('"', "'") + '"'


def brief_error(error: BaseException) -> str:
    """An error in one line, without request headers (Azure errors can carry SAS tokens in them)."""
    code = getattr(error, "error_code", None) or getattr(error, "status_code", None)
    text = str(error).splitlines()[0] if str(error) else error.__class__.__name__
    return f"{code}: {text}"[:300] if code else text[:300]
