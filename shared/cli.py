"""`python -m shared.cli COMMAND [OPTIONS]`: the same jobs the functions run, from a terminal.

Settings come from the environment, with `local.settings.json` in the repository root read too (the
environment wins). With `--json` the last line of stdout is one JSON object. Exit code 0 when the command
did its job; otherwise non-zero, with a last stderr line naming the cause and no traceback.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from shared.errors import ExitCode
from shared.settings import Settings, SettingsError, load_local_settings

ROOT = Path(__file__).resolve().parent.parent


class CommandResult(Protocol):
    """What every command returns: JSON for machines, lines for people, and whether it did its job."""

    def to_json(self) -> dict[str, Any]: ...
    def text_lines(self) -> list[str]: ...
    @property
    def exit_code(self) -> int: ...
    @property
    def failure(self) -> str: ...


class CommandFailed(Exception):
    """A command could not do its job; the message is the last stderr line."""

    def __init__(self, message: str, exit_code: int = ExitCode.FAILED):
        super().__init__(message)
        self.exit_code = exit_code


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m shared.cli", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, help_text: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_text, description=help_text)
        sub.add_argument("--json", action="store_true", help="print one JSON object as the last line of stdout")
        return sub

    process = command("process", "drain the incoming container into AtHoc, as the trigger and the sweep do")
    process.add_argument("--dry-run", action="store_true", help="show what would be sent; send and move nothing")
    process.add_argument("--wait", type=float, default=60.0, metavar="SECONDS",
                         help="wait this long for a running batcher to finish (default 60)")  # fmt: skip
    sync = command("sync-mappings", "refresh the employee id -> AtHoc login mapping")
    sync.add_argument("--force", action="store_true", help="run now, whatever the schedule (safety rules still apply)")
    cleanup = command("cleanup", "clear stale duty values in AtHoc, then purge old logs and processed files")
    cleanup.add_argument("--dry-run", action="store_true", help="list what would be cleared; change nothing")
    command("status", "what is waiting, what failed, and how each job last ran")
    command("check", "settings, storage, AtHoc connection and attributes, one line per check")
    retry = command("retry-failed", "move failed files back to incoming, attempts reset")
    retry.add_argument("names", nargs="*", metavar="NAME", help="failed file names")
    retry.add_argument("--all", action="store_true", help="every file in the failed container")
    explain = command("explain", "why does AtHoc show this person on (or off) duty: the decision history")
    explain.add_argument("employee_id", metavar="EMPLOYEE_ID", help="collar number (leading zeros ignored)")
    explain.add_argument("--days", type=_positive_days, default=7.0, metavar="N", help="history window (default 7)")
    explain.add_argument("--live", action="store_true", help="also read AtHoc's current value (one search call)")
    reconcile = command("reconcile", "compare AtHoc's duty values with what this app last set (drift)")
    reconcile.add_argument("--apply", action="store_true", help="set drifted users back to what this app set")
    return parser


def _positive_days(raw: str) -> float:
    from shared.explain import parse_days

    try:
        return parse_days(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{raw!r} is not a positive number of days") from None


def _runtime(settings: Settings):  # type: ignore[no-untyped-def]
    from shared.runtime import Runtime, configure_logging
    from shared.storage import probe_storage

    configure_logging(settings.log_level)
    # One request per service without retries: an unreachable account is named in a second, not after
    # the SDK's retries of every call the command would make.
    probe_storage(settings)
    return Runtime(settings)


def _run_process(settings: Settings, args: argparse.Namespace) -> CommandResult:
    from shared.pipeline import drain

    return drain(_runtime(settings), trigger="cli", dry_run=args.dry_run, wait_for_lock=args.wait)


def _run_sync(settings: Settings, args: argparse.Namespace) -> CommandResult:
    from shared.mapping_sync import run_mapping_sync

    return run_mapping_sync(_runtime(settings), force=args.force, trigger="cli")


def _run_cleanup(settings: Settings, args: argparse.Namespace) -> CommandResult:
    from shared.cleanup import run_cleanup

    return run_cleanup(_runtime(settings), dry_run=args.dry_run, trigger="cli")


def _run_status(settings: Settings, args: argparse.Namespace) -> CommandResult:
    from shared.status_report import status_result

    return status_result(_runtime(settings))


def _run_check(settings: Settings, args: argparse.Namespace) -> CommandResult:
    from shared.checks import run_checks

    return run_checks(settings)


def _run_retry(settings: Settings, args: argparse.Namespace) -> CommandResult:
    from shared.retry_failed import retry_failed

    if not args.all and not args.names:
        raise CommandFailed("retry-failed needs NAME ... or --all", ExitCode.SETTINGS)
    return retry_failed(_runtime(settings), names=None if args.all else args.names)


def _run_explain(settings: Settings, args: argparse.Namespace) -> CommandResult:
    from shared.explain import explain

    return explain(_runtime(settings), args.employee_id, days=args.days, live=args.live)


def _run_reconcile(settings: Settings, args: argparse.Namespace) -> CommandResult:
    from shared.reconcile import run_reconcile

    return run_reconcile(_runtime(settings), apply=args.apply, trigger="cli")


COMMANDS: dict[str, Callable[[Settings, argparse.Namespace], CommandResult]] = {
    "process": _run_process,
    "sync-mappings": _run_sync,
    "cleanup": _run_cleanup,
    "status": _run_status,
    "check": _run_check,
    "retry-failed": _run_retry,
    "explain": _run_explain,
    "reconcile": _run_reconcile,
}


def main(argv: list[str] | None = None, env: dict[str, str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from shared.progress import set_quiet

    set_quiet(True if args.json else None)  # progress lines only on a terminal, never under --json
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    from shared import logcontext

    logcontext.install()
    try:
        environment = load_local_settings(ROOT, env)
        settings = Settings.from_env(environment)
    except SettingsError as error:
        if args.command == "check":
            # `check` reports bad settings as its first failed check rather than refusing to run.
            from shared.checks import settings_failure_result

            return _emit(settings_failure_result(error), args)
        return _fail(str(error), ExitCode.SETTINGS, args)
    from shared import telemetry

    telemetry.configure(environment)  # exports only with APPLICATIONINSIGHTS_CONNECTION_STRING
    try:
        result = COMMANDS[args.command](settings, args)
    except CommandFailed as error:
        return _fail(str(error), error.exit_code, args)
    except Exception as error:  # a command ends with its cause on stderr, never a traceback
        from azure.core.exceptions import AzureError

        if isinstance(error, AzureError):
            return _fail(f"storage unreachable: {_first_line(error)}", ExitCode.STORAGE, args)
        logging.getLogger("shared.cli").debug("command failed", exc_info=True)
        return _fail(f"{args.command} failed: {error.__class__.__name__}: {_first_line(error)}", ExitCode.FAILED, args)
    return _emit(result, args)


def _emit(result: CommandResult, args: argparse.Namespace) -> int:
    if args.json:
        print(json.dumps(result.to_json(), default=str, sort_keys=False))
    else:
        for line in result.text_lines():
            print(line)
    if result.exit_code != ExitCode.OK:
        print(result.failure or f"{args.command} failed", file=sys.stderr)
    return result.exit_code


def _fail(message: str, code: int, args: argparse.Namespace) -> int:
    """The command could not run at all: the cause on stderr and, under --json, as the JSON line too."""
    line = message.replace("\n", " ")
    if args.json:
        print(json.dumps({"command": args.command, "error": line, "errors": [line], "exit_code": code}))
    print(line, file=sys.stderr)
    return code


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0][:300] if text else error.__class__.__name__


def run_and_exit() -> int:
    """`python -m shared.cli`: the command, then what telemetry buffered, sent within its budget."""
    try:
        return main()
    finally:
        from shared import telemetry

        telemetry.shutdown()


if __name__ == "__main__":
    raise SystemExit(run_and_exit())
