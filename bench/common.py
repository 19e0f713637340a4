"""Shared pieces of the benchmarks and the chaos run: isolated settings, seeding, rows, child processes."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import uuid
from collections import Counter
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent

SIM_CREDENTIALS = {
    "ATHOC_ORG_CODE": "DEMO",
    "ATHOC_CLIENT_ID": "bobo-sync",
    "ATHOC_CLIENT_SECRET": "sim-client-secret",
    "ATHOC_USERNAME": "svc-bobo",
    "ATHOC_PASSWORD": "sim-password",
}
DUTY = "On-Duty-DTG"
COLLAR = "Collar-Number"
DATETIME_FORMAT = "%d/%m/%Y %H:%M:%S"


def make_env(connection_string: str, athoc_url: str, **overrides: str) -> dict[str, str]:
    """A complete settings environment with its own containers and table prefix."""
    tag = uuid.uuid4().hex[:8]
    env = {
        "ATHOC_SERVER_URL": athoc_url,
        **SIM_CREDENTIALS,
        "BOBO_STORAGE": connection_string,
        "BOBO_INCOMING_CONTAINER": f"in-{tag}",
        "BOBO_PROCESSED_CONTAINER": f"done-{tag}",
        "BOBO_FAILED_CONTAINER": f"failed-{tag}",
        "BOBO_REJECTS_CONTAINER": f"rejects-{tag}",
        "BOBO_TABLE_PREFIX": f"b{tag}",
        "LOG_LEVEL": "WARNING",
    }
    env.update(overrides)
    return env


def runtime_of(env: Mapping[str, str]):  # type: ignore[no-untyped-def]
    from shared.runtime import Runtime
    from shared.settings import Settings

    runtime = Runtime(Settings.from_env(dict(env)))
    runtime.ensure_ready()
    return runtime


def login_of(employee: int | str) -> str:
    return f"user{int(employee):05d}@force.example"


def seed_users(sim: Any, runtime: Any, employees: Iterable[int], *, mapped: bool = True, duty: Any = None) -> None:
    """AtHoc users with collar ids; with `mapped`, the mapping rows a sync would write and its success."""
    from shared.records import JobKind, MappingEntry, Outcome

    employees = list(employees)
    users = []
    for e in employees:
        user = {"LOGIN_ID": login_of(e), COLLAR: str(int(e))}
        value = duty(e) if callable(duty) else None
        if value is not None:
            user[DUTY] = value
        users.append(user)
    sim.add_users(users)
    if mapped:
        runtime.state.apply_mapping_changes(
            [MappingEntry(str(int(e)), login_of(e), str(int(e))) for e in employees], []
        )
        runtime.state.record_job(JobKind.SYNC_MAPPINGS, Outcome.SUCCESS, new_version=True)


def row(action: str, employee: int | str, when: str, created: str | None = None) -> str:
    """A 10-column BOBO row; `when` and `created` are YYYYMMDDHHMMSS."""
    emp = f"{int(employee):05d}"
    geo = "3,51.501,-0.141,12.5" if action == "BON" else "0,0,0,0"
    return f"{action},{emp},P{emp},{when[:8]},{when[8:]},{created or when},{geo}"


def upload_many(runtime: Any, files: Mapping[str, bytes], threads: int = 16) -> None:
    container = runtime.storage.incoming

    def put(item: tuple[str, bytes]) -> None:
        container.upload_blob(item[0], item[1], overwrite=True)

    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(put, files.items()))


def child_env(env: Mapping[str, str]) -> dict[str, str]:
    full = dict(os.environ)
    full.update(env)
    full["PYTHONPATH"] = str(ROOT) + (os.pathsep + full["PYTHONPATH"] if full.get("PYTHONPATH") else "")
    return full


def run_child(job: str, env: Mapping[str, str], *args: str, timeout: float = 1800) -> dict[str, Any]:
    """Run `python -m bench.child JOB ARGS` with these settings; returns its JSON (the last stdout line)."""
    proc = subprocess.run(
        [sys.executable, "-m", "bench.child", job, *args],
        env=child_env(env),
        cwd=ROOT,
        capture_output=True,
        timeout=timeout,
        check=False,
    )
    lines = proc.stdout.decode("utf-8", "replace").strip().splitlines()
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"bench.child {job} failed ({proc.returncode}): {proc.stderr.decode()[-3000:]}")
    return json.loads(lines[-1])


def counter_diff(after: Mapping[str, int], before: Mapping[str, int]) -> dict[str, int]:
    diff = Counter(after)
    diff.subtract(Counter(before))
    return {k: v for k, v in sorted(diff.items()) if v}


def machine() -> dict[str, Any]:
    info: dict[str, Any] = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
    }
    try:
        import psutil

        info["memory_gb"] = round(psutil.virtual_memory().total / 2**30, 1)
        info["load_avg"] = [round(x, 2) for x in os.getloadavg()]
    except Exception:  # noqa: S110 - psutil is optional here
        pass
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return info
