"""sync_mappings and clear_stale_duty (timers): thin adapters over shared.mapping_sync and shared.cleanup."""

from __future__ import annotations

import logging

import azure.functions as func

log = logging.getLogger("functions.maintenance")
bp = func.Blueprint()


@bp.function_name("sync_mappings")
@bp.timer_trigger(arg_name="timer", schedule="%BOBO_MAPPING_SCHEDULE%", run_on_startup=False, use_monitor=True)
def sync_mappings(timer: func.TimerRequest) -> None:
    """Refresh the employee id -> AtHoc login mapping when the schedule rule says it is due."""
    from shared.mapping_sync import run_mapping_sync
    from shared.runtime import process_runtime

    run_mapping_sync(process_runtime(), force=False, trigger="sync_mappings")


@bp.function_name("clear_stale_duty")
@bp.timer_trigger(arg_name="timer", schedule="%BOBO_CLEANUP_SCHEDULE%", run_on_startup=False, use_monitor=True)
def clear_stale_duty(timer: func.TimerRequest) -> None:
    """Clear duty values older than BOBO_AUTO_CLEANUP_HOURS, then purge old run logs and processed files."""
    from shared.cleanup import run_cleanup
    from shared.runtime import process_runtime

    run_cleanup(process_runtime(), dry_run=False, trigger="clear_stale_duty")
