"""The per-process context of every job: settings, storage, state and the AtHoc client, built once.

Functions and the command line share it; tests build their own `Runtime(settings)` against Azurite
and the AtHoc simulator, without touching the process environment.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING

from shared.settings import Settings

if TYPE_CHECKING:
    from shared.athoc import AtHocClient
    from shared.state import StateStore
    from shared.storage import Storage

log = logging.getLogger(__name__)


@dataclass
class Runtime:
    settings: Settings
    _ready: bool = field(default=False, init=False, repr=False)
    _ready_lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    # The clients are built on first use: importing this module (function_app.py does) touches no network.
    @cached_property
    def storage(self) -> Storage:
        from shared.storage import Storage

        return Storage(self.settings)

    @cached_property
    def state(self) -> StateStore:
        from shared.state import StateStore

        return StateStore(self.settings)

    @cached_property
    def athoc(self) -> AtHocClient:
        from shared.athoc import AtHocClient

        return AtHocClient(self.settings.athoc)

    def ensure_ready(self) -> None:
        """Create missing containers and tables, once per process (every trigger and command does)."""
        if self._ready:
            return
        with self._ready_lock:
            if not self._ready:
                self.storage.ensure_containers()
                self.state.ensure_tables()
                self._ready = True


_process_runtime: Runtime | None = None
_process_lock = threading.Lock()


def process_runtime() -> Runtime:
    """The runtime of this process, from the environment (app settings in Azure), created on first use."""
    global _process_runtime
    if _process_runtime is None:
        with _process_lock:
            if _process_runtime is None:
                settings = Settings.from_env()
                configure_logging(settings.log_level)
                from shared import telemetry

                telemetry.configure()  # once per process; nothing without APPLICATIONINSIGHTS_CONNECTION_STRING
                _process_runtime = Runtime(settings)
    return _process_runtime


def configure_logging(level: str) -> None:
    """Set the app's own loggers; the Azure SDK's HTTP logging stays at WARNING (it would log every request).

    Every record made from now on carries the run id and job kind of the run it belongs to.
    """
    from shared import logcontext

    logcontext.install()
    logging.getLogger("shared").setLevel(level)
    logging.getLogger("functions").setLevel(level)
    logging.getLogger("azure").setLevel(logging.WARNING)
