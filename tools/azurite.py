"""Start and stop Azurite, the local Azure Storage emulator, from the project's own npm install.

Used by the test fixtures, the demo and the benchmarks (free loopback ports, data in memory or in a
folder this module owns), and by developers for `func start` (`python -m tools.azurite --default-ports`).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
AZURITE_BIN = ROOT / "node_modules" / ".bin" / "azurite"

# The well-known development account: public, documented by Microsoft, not a secret.
DEV_ACCOUNT = "devstoreaccount1"
DEV_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Azurite:
    """A running Azurite process on 127.0.0.1."""

    blob_port: int
    queue_port: int
    table_port: int
    location: Path | None
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    _owns_location: bool = field(default=False, repr=False)

    @property
    def connection_string(self) -> str:
        host = "http://127.0.0.1"
        return (
            f"DefaultEndpointsProtocol=http;AccountName={DEV_ACCOUNT};AccountKey={DEV_KEY};"
            f"BlobEndpoint={host}:{self.blob_port}/{DEV_ACCOUNT};"
            f"QueueEndpoint={host}:{self.queue_port}/{DEV_ACCOUNT};"
            f"TableEndpoint={host}:{self.table_port}/{DEV_ACCOUNT};"
        )

    def start(self, timeout: float = 60.0) -> Azurite:
        if not AZURITE_BIN.exists():
            raise RuntimeError(f"Azurite is not installed: run `npm ci` in {ROOT} (the ./dev script does it)")
        args = [
            str(AZURITE_BIN),
            "--blobHost", "127.0.0.1", "--blobPort", str(self.blob_port),
            "--queueHost", "127.0.0.1", "--queuePort", str(self.queue_port),
            "--tableHost", "127.0.0.1", "--tablePort", str(self.table_port),
            "--skipApiVersionCheck",  # the current blob SDK sends an API version newer than Azurite 3.35 knows
            "--disableTelemetry",
            "--loose",
        ]  # fmt: skip
        if self.location is None:
            args.append("--inMemoryPersistence")
        else:
            self.location.mkdir(parents=True, exist_ok=True)
            args += ["--location", str(self.location)]
        log_dir = Path(tempfile.gettempdir())
        log = open(log_dir / f"azurite-{self.blob_port}.log", "ab")  # noqa: SIM115 - lives as long as the process
        self.process = subprocess.Popen(
            args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
        )
        self._wait_ready(timeout)
        return self

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        pending = {self.blob_port, self.queue_port, self.table_port}
        while pending:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(
                    f"Azurite exited with code {self.process.returncode} (ports {sorted(pending)} busy?)"
                )
            for port in list(pending):
                with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    pending.discard(port)
            if pending:
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"Azurite did not open ports {sorted(pending)} within {timeout:.0f} s")
                time.sleep(0.1)

    def stop(self) -> None:
        """Stop the process group by PID; keeps a persistent `location` unless this object created it."""
        if self.process is not None and self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)
        self.process = None

    def restart(self) -> Azurite:
        """Stop and start on the same ports and location (used by the chaos run)."""
        self.stop()
        return self.start()

    def cleanup(self) -> None:
        self.stop()
        if self._owns_location and self.location is not None:
            shutil.rmtree(self.location, ignore_errors=True)


def start_azurite(*, persistent: bool = False, location: Path | None = None, default_ports: bool = False) -> Azurite:
    """Start Azurite on free loopback ports (or 10000-10002), in memory unless `persistent` or `location`."""
    owns = False
    if location is None and persistent:
        location = Path(tempfile.mkdtemp(prefix="azurite-"))
        owns = True
    for attempt in range(5):
        ports = (10000, 10001, 10002) if default_ports else (free_port(), free_port(), free_port())
        azurite = Azurite(*ports, location=location, _owns_location=owns)
        try:
            return azurite.start()
        except RuntimeError:
            # A port picked as free can be taken before Azurite binds it; pick again.
            if default_ports or attempt == 4:
                raise
    raise AssertionError("unreachable")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run Azurite for local development on loopback.")
    parser.add_argument("--default-ports", action="store_true", help="10000-10002, for UseDevelopmentStorage=true")
    parser.add_argument("--location", type=Path, default=ROOT / ".azurite", help="data folder (default .azurite/)")
    parser.add_argument("--in-memory", action="store_true", help="keep no data on disk")
    args = parser.parse_args(argv)
    azurite = start_azurite(location=None if args.in_memory else args.location, default_ports=args.default_ports)
    print(f"BOBO_STORAGE={azurite.connection_string}", flush=True)
    print("Azurite is running; Ctrl+C stops it.", file=sys.stderr, flush=True)
    try:
        while azurite.process is not None and azurite.process.poll() is None:
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        azurite.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
