"""The uploader against Azurite, as a real process: exactly once, settled files, crashes, outages, secrets.

Each case runs `python -m shared.uploader` in a subprocess. The crash and outage cases run it through a
small wrapper (written next to the test's files, never part of the product) that stops the process with
SIGKILL, or pauses it, at a named step; the product itself has no test hooks.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from azure.storage.blob import BlobServiceClient, ContainerClient, ContainerSasPermissions, generate_container_sas

from shared.pipeline import drain
from tests.helpers import ROOT, bof, bon, csv_of, login_of, seed_users, where
from tools.azurite import DEV_ACCOUNT, DEV_KEY, Azurite, free_port, start_azurite

DUTY = "On-Duty-DTG"
SUFFIXED = re.compile(r"^(?P<stem>.+)-\d{8}T\d{6}Z(?P<ext>\.csv)$", re.IGNORECASE)

# Runs the real command, stopping it at a named step: BOBO_UPLOAD_CRASH_AT=before-upload | after-upload |
# after-journal kills the process with SIGKILL at the BOBO_UPLOAD_CRASH_FILE-th file (1-based);
# BOBO_UPLOAD_PAUSE_AFTER=N writes PAUSE_FILE.paused after N confirmed files and waits for PAUSE_FILE.go;
# FAST_RETRY=1 shortens the SDK's backoff (seconds per failed request) so outage cases take seconds.
WRAPPER = textwrap.dedent(
    """
    import os, signal, sys, time
    from pathlib import Path
    from shared.uploader import journal, passes, transfer
    from shared.uploader.cli import main

    if os.environ.get("FAST_RETRY"):
        transfer.RETRY.update(initial_backoff=0.05, increment_base=0.1, random_jitter_range=0.05)

    crash_at = os.environ.get("BOBO_UPLOAD_CRASH_AT", "")
    crash_file = int(os.environ.get("BOBO_UPLOAD_CRASH_FILE", "1"))
    pause_after = int(os.environ.get("BOBO_UPLOAD_PAUSE_AFTER", "0"))
    seen = {"sent": 0, "confirmed": 0}
    real_send, real_confirm = passes.send_file, journal.Journal.confirm

    def die(point):
        if crash_at == point and seen["sent"] == crash_file:
            os.kill(os.getpid(), signal.SIGKILL)

    def send_file(*args, **kwargs):
        seen["sent"] += 1
        die("before-upload")
        result = real_send(*args, **kwargs)
        die("after-upload")
        return result

    def confirm(self, entry):
        real_confirm(self, entry)
        die("after-journal")
        seen["confirmed"] += 1
        if seen["confirmed"] == pause_after:
            marker = Path(os.environ["PAUSE_FILE"])
            marker.with_suffix(".paused").touch()
            while not marker.with_suffix(".go").exists():
                time.sleep(0.02)

    passes.send_file, journal.Journal.confirm = send_file, confirm
    sys.exit(main(sys.argv[1:]))
    """
)


class Run:
    def __init__(self, completed: subprocess.CompletedProcess[str]):
        self.code = completed.returncode
        self.stdout = completed.stdout
        self.stderr = completed.stderr
        lines = completed.stdout.strip().splitlines()
        self.summary: dict[str, Any] = json.loads(lines[-1]) if lines and lines[-1].startswith("{") else {}


def child_env(extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BOBO_", "AZURE_"))}
    env.update({"PYTHONPATH": str(ROOT), "BOBO_UPLOAD_SETTLE_SECONDS": "2", **extra})
    return env


def run_uploader(env: dict[str, str], folder: Path, *args: str, wrapper: Path | None = None) -> Run:
    command = [sys.executable, str(wrapper)] if wrapper else [sys.executable, "-m", "shared.uploader"]
    completed = subprocess.run(
        [*command, "--folder", str(folder), "--json", *args],
        env=child_env(env),
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    return Run(completed)


def settled_file(folder: Path, name: str, text: str, age_seconds: float = 60) -> Path:
    path = folder / name
    path.write_text(text, encoding="utf-8", newline="")
    stamp = time.time() - age_seconds
    os.utime(path, (stamp, stamp))
    return path


def export_rows(n: int) -> str:
    return csv_of(bon(f"{n:05d}", f"20251022{n // 60 % 24:02d}{n % 60:02d}00"), bof(f"{n + 1:05d}", "20251022070000"))


def csv_names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.suffix.lower() == ".csv")


def blobs(container: ContainerClient) -> dict[str, bytes]:
    return {b.name: container.download_blob(b.name).readall() for b in container.list_blobs()}


@pytest.fixture
def incoming(azurite: Azurite) -> ContainerClient:
    container = BlobServiceClient.from_connection_string(azurite.connection_string).get_container_client(
        f"up-{uuid.uuid4().hex[:8]}"
    )
    container.create_container()
    return container


@pytest.fixture
def storage_env(azurite: Azurite, incoming: ContainerClient) -> dict[str, str]:
    return {"BOBO_STORAGE": azurite.connection_string, "BOBO_INCOMING_CONTAINER": incoming.container_name}


@pytest.fixture
def wrapper(tmp_path: Path) -> Path:
    path = tmp_path / "crash_wrapper.py"
    path.write_text(WRAPPER, encoding="utf-8")
    return path


def test_fifty_files_are_uploaded_once_and_archived_and_a_second_pass_sends_nothing(
    tmp_path: Path, incoming: ContainerClient, storage_env: dict[str, str]
) -> None:
    folder = tmp_path / "out"
    folder.mkdir()
    expected = {f"bobo-{i:03d}.{'CSV' if i % 5 == 0 else 'csv'}": export_rows(i).encode() for i in range(50)}
    for name, body in expected.items():
        settled_file(folder, name, body.decode())

    first = run_uploader(storage_env, folder)

    assert first.code == 0, first.stderr
    assert first.summary == {"uploaded": 50, "already_there": 0, "skipped_unsettled": 0, "failed": 0, "errors": []}
    assert blobs(incoming) == expected
    assert csv_names(folder) == [] and csv_names(folder / "uploaded") == sorted(expected)
    etags = {b.name: b.etag for b in incoming.list_blobs()}

    second = run_uploader(storage_env, folder)

    assert second.code == 0 and (second.summary["uploaded"], second.summary["already_there"]) == (0, 0)
    assert {b.name: b.etag for b in incoming.list_blobs()} == etags  # nothing written again


def test_dry_run_lists_settled_files_and_sends_and_moves_nothing(
    tmp_path: Path, incoming: ContainerClient, storage_env: dict[str, str]
) -> None:
    settled_file(tmp_path, "a.csv", export_rows(1))
    settled_file(tmp_path, "b.csv", export_rows(2), age_seconds=0)

    run = run_uploader(storage_env, tmp_path, "--dry-run")

    assert run.code == 0, run.stderr
    assert (run.summary["uploaded"], run.summary["skipped_unsettled"], run.summary["would_upload"]) == (1, 1, ["a.csv"])
    assert "would upload a.csv" in run.stdout
    assert blobs(incoming) == {} and csv_names(tmp_path) == ["a.csv", "b.csv"]


def test_a_file_still_growing_is_left_for_the_next_pass(
    tmp_path: Path, incoming: ContainerClient, storage_env: dict[str, str]
) -> None:
    growing = tmp_path / "growing.csv"
    growing.write_text("", encoding="utf-8")
    writer = subprocess.Popen(  # BOBO writing: a row every 0.1 s, for as long as the pass may take
        [sys.executable, "-c", f"import time\nfor i in range(300):\n open({str(growing)!r}, 'a').write("
         f"'BON,{{:05d}},P,20251022,070000,20251022070000,0,0,0,0\\n'.format(i)); time.sleep(0.1)"]
    )  # fmt: skip
    settled_file(tmp_path, "done.csv", export_rows(7))
    try:
        first = run_uploader(storage_env, tmp_path)
    finally:
        writer.kill()
        writer.wait()

    assert first.code == 0, first.stderr
    assert (first.summary["uploaded"], first.summary["skipped_unsettled"]) == (1, 1)
    assert set(blobs(incoming)) == {"done.csv"} and csv_names(tmp_path) == ["growing.csv"]

    final = growing.read_bytes()
    stamp = time.time() - 60  # BOBO finished a minute ago
    os.utime(growing, (stamp, stamp))
    second = run_uploader(storage_env, tmp_path)

    assert (second.summary["uploaded"], second.summary["skipped_unsettled"]) == (1, 0)
    assert blobs(incoming)["growing.csv"] == final and len(final) > 0


def test_a_taken_name_with_other_content_gets_the_suffix_and_the_same_content_is_already_there(
    tmp_path: Path, incoming: ContainerClient, storage_env: dict[str, str]
) -> None:
    folder, store = tmp_path / "out", tmp_path / "out" / "uploaded"
    store.mkdir(parents=True)
    for name in ("other.csv", "same.csv", "same-no-md5.csv"):
        settled_file(folder, name, export_rows(len(name)))
    incoming.upload_blob("other.csv", b"BON,99999,P,20251021,070000,20251021070000,0,0,0,0\n")
    incoming.upload_blob("same.csv", export_rows(len("same.csv")).encode())
    # As a block upload (azcopy without --put-md5) leaves it: no Content-MD5; the uploader hashes the blob.
    block = incoming.get_blob_client("same-no-md5.csv")
    block.stage_block("b1", export_rows(len("same-no-md5.csv")).encode())
    block.commit_block_list(["b1"])
    assert block.get_blob_properties().content_settings.content_md5 is None
    (store / "other.csv").write_text("an earlier export of the same name", encoding="utf-8")

    run = run_uploader(storage_env, folder)

    assert run.code == 0, run.stderr
    assert (run.summary["uploaded"], run.summary["already_there"], run.summary["failed"]) == (1, 2, 0)
    stored = blobs(incoming)
    suffixed = [name for name in stored if SUFFIXED.match(name)]
    assert len(stored) == 4 and len(suffixed) == 1
    assert SUFFIXED.match(suffixed[0]).group("stem") == "other"  # type: ignore[union-attr]
    assert stored[suffixed[0]] == export_rows(len("other.csv")).encode()
    assert stored["other.csv"].startswith(b"BON,99999")  # never overwritten
    archived = csv_names(store)
    assert "other.csv" in archived and len(archived) == 4 and csv_names(folder) == []
    assert (store / "other.csv").read_text(encoding="utf-8") == "an earlier export of the same name"


@pytest.mark.slow
@pytest.mark.parametrize("point", ["before-upload", "after-upload", "after-journal"])
def test_a_crash_at_any_step_ends_with_one_blob_per_file_and_every_file_archived(
    point: str, tmp_path: Path, incoming: ContainerClient, storage_env: dict[str, str], wrapper: Path
) -> None:
    folder = tmp_path / "out"
    folder.mkdir()
    names = [f"f{i}.csv" for i in range(1, 6)]
    for i, name in enumerate(names):
        settled_file(folder, name, export_rows(i), age_seconds=60 - i)  # oldest first: f3 is the 3rd sent

    crashed = run_uploader({**storage_env, "BOBO_UPLOAD_CRASH_AT": point, "BOBO_UPLOAD_CRASH_FILE": "3"}, folder,
                           wrapper=wrapper)  # fmt: skip

    assert crashed.code == -signal.SIGKILL
    assert "f3.csv" in csv_names(folder)  # killed before its move
    assert ("f3.csv" in blobs(incoming)) == (point != "before-upload")
    taken_by_pipeline = point == "after-journal"
    if taken_by_pipeline:
        # The pipeline moves the blob on before the next pass: only the journal can tell f3 was sent.
        incoming.delete_blob("f3.csv")

    recovered = run_uploader(storage_env, folder)

    assert recovered.code == 0, recovered.stderr
    assert recovered.summary["failed"] == 0
    assert recovered.summary["uploaded"] + recovered.summary["already_there"] == 3
    assert recovered.summary["already_there"] == (0 if point == "before-upload" else 1)
    expected = {name: export_rows(i).encode() for i, name in enumerate(names)}
    if taken_by_pipeline:
        del expected["f3.csv"]  # archived, not sent again
    assert blobs(incoming) == expected  # exactly one blob per file, no suffixed second copy
    assert csv_names(folder) == [] and csv_names(folder / "uploaded") == names


@pytest.mark.slow
def test_storage_stopping_mid_pass_loses_nothing_counts_failures_and_the_next_pass_finishes(
    tmp_path: Path, wrapper: Path
) -> None:
    own = start_azurite(persistent=True)  # its own emulator: the session one keeps serving the other tests
    try:
        container = BlobServiceClient.from_connection_string(own.connection_string).get_container_client("bobo-in")
        container.create_container()
        env = {"BOBO_STORAGE": own.connection_string, "BOBO_INCOMING_CONTAINER": "bobo-in"}
        folder = tmp_path / "out"
        folder.mkdir()
        names = [f"f{i:02d}.csv" for i in range(12)]
        for i, name in enumerate(names):
            settled_file(folder, name, export_rows(i), age_seconds=60 - i)
        pause = tmp_path / "pause"
        process = subprocess.Popen(
            [sys.executable, str(wrapper), "--folder", str(folder), "--json"],
            env=child_env({**env, "BOBO_UPLOAD_PAUSE_AFTER": "4", "PAUSE_FILE": str(pause), "FAST_RETRY": "1"}),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=ROOT,
        )
        deadline = time.monotonic() + 60
        while not pause.with_suffix(".paused").exists() and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        own.stop()  # storage goes away after the 4th file, in the middle of the pass
        pause.with_suffix(".go").touch()
        stdout, stderr = process.communicate(timeout=120)
        during = Run(subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr))

        assert during.code == 0, stderr  # the pass ran; the failures are counted, not fatal
        assert (during.summary["uploaded"], during.summary["failed"]) == (4, 8)
        assert any("left for the next pass" in e for e in during.summary["errors"])
        assert sorted(csv_names(folder) + csv_names(folder / "uploaded")) == names  # nothing lost
        assert csv_names(folder / "uploaded") == names[:4]

        own.start()
        after = run_uploader(env, folder)

        assert after.code == 0, after.stderr
        assert (after.summary["uploaded"], after.summary["failed"]) == (8, 0)
        assert blobs(container) == {name: export_rows(i).encode() for i, name in enumerate(names)}
        assert csv_names(folder) == [] and csv_names(folder / "uploaded") == names
    finally:
        own.cleanup()


@pytest.mark.slow
def test_uploader_to_pipeline_to_athoc_and_nothing_resent_after_the_pipeline_moved_the_blobs(
    tmp_path: Path, make_runtime: Any, athoc_sim: Any, azurite: Azurite, wrapper: Path
) -> None:
    runtime = make_runtime()
    seed_users(athoc_sim, runtime, ["00123", "04711", "00042"])
    athoc_sim.set_attribute(login_of("4711"), DUTY, "21/10/2025 07:00:00")
    env = {"BOBO_STORAGE": azurite.connection_string, "BOBO_INCOMING_CONTAINER": runtime.settings.incoming_container}
    folder = tmp_path / "out"
    folder.mkdir()
    settled_file(folder, "a.csv", csv_of(bon("00123", "20251022074142"), bof("04711", "20251022074155")), 90)
    settled_file(folder, "b.csv", csv_of(bon("00042", "20251022080000")), 80)
    settled_file(folder, "c.csv", csv_of(bof("00123", "20251022090000")), 70)

    # The uploader dies after recording b.csv as sent, before archiving it; the pipeline then takes a and b.
    crashed = run_uploader({**env, "BOBO_UPLOAD_CRASH_AT": "after-journal", "BOBO_UPLOAD_CRASH_FILE": "2"}, folder,
                           wrapper=wrapper)  # fmt: skip
    assert crashed.code == -signal.SIGKILL
    drain(runtime)
    assert where(runtime)["processed"] == ["a.csv", "b.csv"]
    sent_before = [r.body for r in athoc_sim.requests if r.kind == "sync"]

    again = run_uploader(env, folder)
    drain(runtime)

    assert again.code == 0, again.stderr
    assert (again.summary["uploaded"], again.summary["already_there"]) == (1, 1)  # c sent; b archived only
    assert where(runtime)["processed"] == ["a.csv", "b.csv", "c.csv"] and where(runtime)["incoming"] == []
    duty = {e: athoc_sim.get_user(login_of(e)).get(DUTY) for e in ("123", "4711", "42")}
    assert duty == {"123": "", "4711": "", "42": "22/10/2025 08:00:00"}
    sent_after = [r.body for r in athoc_sim.requests if r.kind == "sync"][len(sent_before) :]
    assert [row for body in sent_after for row in body] == [{"LOGIN_ID": login_of("123"), DUTY: ""}]
    assert csv_names(folder) == [] and csv_names(folder / "uploaded") == ["a.csv", "b.csv", "c.csv"]


def _sas_url(azurite: Azurite, container: str, *, key: str = DEV_KEY, port: int | None = None) -> tuple[str, str]:
    sas = generate_container_sas(
        DEV_ACCOUNT,
        container,
        account_key=key,
        permission=ContainerSasPermissions(read=True, write=True, create=True),
        expiry=datetime.now(UTC) + timedelta(hours=1),
    )
    signature = re.search(r"sig=([^&]+)", sas).group(1)  # type: ignore[union-attr]
    return f"http://127.0.0.1:{port or azurite.blob_port}/{DEV_ACCOUNT}/{container}?{sas}", signature


def _assert_nowhere(secret: str, run: Run, log_file: Path) -> str:
    seen = run.stdout + run.stderr + log_file.read_text(encoding="utf-8")
    decoded = secret.replace("%2B", "+").replace("%3D", "=").replace("%2F", "/")
    leaked = secret in seen or decoded in seen
    assert not leaked, "the SAS signature appears in stdout, stderr or the log"  # not shown: a failure would print it
    return seen


def test_a_sas_signature_never_appears_in_output_or_log(
    tmp_path: Path, azurite: Azurite, incoming: ContainerClient, wrapper: Path
) -> None:
    url, signature = _sas_url(azurite, incoming.container_name)
    settled_file(tmp_path, "a.csv", export_rows(1))

    ok = run_uploader({"BOBO_UPLOAD_URL": url, "LOG_LEVEL": "DEBUG"}, tmp_path)

    assert ok.code == 0 and ok.summary["uploaded"] == 1, ok.stderr
    seen = _assert_nowhere(signature, ok, tmp_path / "uploaded" / "uploader.log")
    # urllib3's DEBUG line carries the request URL, token and all: there to leak, and redacted (the whole
    # token, or its sig= value when the SDK re-encoded the query).
    assert re.search(r'"PUT /[^"]*/a\.csv\?[^"]*REDACTED', seen)  # no message: it would print the log

    # Storage unreachable: the failure and its retries are reported and logged, still without the token.
    unreachable, _ = _sas_url(azurite, incoming.container_name, port=free_port())
    url_with_same_sas = unreachable.split("?")[0] + "?" + url.split("?")[1]
    settled_file(tmp_path, "b.csv", export_rows(2))
    down = run_uploader({"BOBO_UPLOAD_URL": url_with_same_sas, "LOG_LEVEL": "DEBUG", "FAST_RETRY": "1"}, tmp_path,
                        wrapper=wrapper)  # fmt: skip

    assert down.code == 0 and down.summary["failed"] == 1
    _assert_nowhere(signature, down, tmp_path / "uploaded" / "uploader.log")


def test_a_refused_credential_stops_the_pass_with_a_one_line_cause_and_no_secret(
    tmp_path: Path, azurite: Azurite, incoming: ContainerClient
) -> None:
    wrong_key = "V3Jvbmcga2V5IGZvciB0aGUgdGVzdCBvbmx5IC0gbm90IHRoZSBhY2NvdW50IGtleSBhdCBhbGwhISEhISE="
    url, signature = _sas_url(azurite, incoming.container_name, key=wrong_key)
    for i in range(3):
        settled_file(tmp_path, f"f{i}.csv", export_rows(i))

    run = run_uploader({"BOBO_UPLOAD_URL": url}, tmp_path)

    assert run.code == 3
    last = run.stderr.strip().splitlines()[-1]
    assert "refused the credentials" in last and "Traceback" not in run.stderr
    assert run.summary["failed"] == 3 and run.summary["uploaded"] == 0
    assert csv_names(tmp_path) == ["f0.csv", "f1.csv", "f2.csv"] and blobs(incoming) == {}
    _assert_nowhere(signature, run, tmp_path / "uploaded" / "uploader.log")
    log_text = (tmp_path / "uploaded" / "uploader.log").read_text(encoding="utf-8")
    assert log_text.count("refused the credentials") <= 2  # the one file tried, then the stop: no retry storm


def test_bad_settings_and_a_missing_folder_exit_non_zero_naming_the_cause(tmp_path: Path) -> None:
    url = {"BOBO_UPLOAD_URL": "https://a.blob.core.windows.net/in-x"}
    missing = run_uploader(url, tmp_path / "nope")
    assert missing.code == 2 and "is not a folder" in missing.stderr.strip().splitlines()[-1]
    bad = run_uploader({"BOBO_UPLOAD_URL": "https://a.blob.core.windows.net/in-x", "BOBO_UPLOAD_SETTLE_SECONDS": "x"},
                       tmp_path)  # fmt: skip
    assert bad.code == 2 and "BOBO_UPLOAD_SETTLE_SECONDS" in bad.stderr.strip().splitlines()[-1]
    same = run_uploader(url, tmp_path, "--archive", str(tmp_path))
    assert same.code == 2 and "--archive" in same.stderr.strip().splitlines()[-1]


def _imported_modules(stderr: str) -> set[str]:
    """Module names from `python -X importtime` output (`import time: self | cumulative | name`)."""
    names = set()
    for line in stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            names.add(line.rsplit("|", 1)[1].strip())
    return names


def test_the_uploader_imports_neither_the_functions_stack_nor_tables_nor_the_athoc_client(
    tmp_path: Path, storage_env: dict[str, str]
) -> None:
    settled_file(tmp_path, "a.csv", export_rows(1))
    command = [sys.executable, "-X", "importtime", "-m", "shared.uploader", "--folder", str(tmp_path), "--once"]
    run = subprocess.run(command, env=child_env(storage_env), capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert run.returncode == 0, run.stderr[-2000:]
    modules = _imported_modules(run.stderr)
    assert "azure.storage.blob" in modules  # the check sees the real imports of a pass that uploaded
    forbidden = {
        m for m in modules if m.startswith(("azure.functions", "azurefunctions", "azure.data.tables", "msal"))
    } | (modules & {"shared.athoc", "shared.storage", "shared.state", "shared.pipeline", "shared.runtime"})
    assert forbidden == set()

    helped = subprocess.run([sys.executable, "-X", "importtime", "-m", "shared.uploader", "--help"],
                            env=child_env({}), capture_output=True, text=True, timeout=60, cwd=ROOT)  # fmt: skip
    assert helped.returncode == 0 and "--folder" in helped.stdout
    assert not {m for m in _imported_modules(helped.stderr) if m.startswith("azure")}


def test_watch_makes_a_pass_every_interval_until_stopped(
    tmp_path: Path, incoming: ContainerClient, storage_env: dict[str, str]
) -> None:
    settled_file(tmp_path, "a.csv", export_rows(1))
    process = subprocess.Popen(
        [sys.executable, "-m", "shared.uploader", "--folder", str(tmp_path), "--watch", "--json"],
        env=child_env({**storage_env, "BOBO_UPLOAD_INTERVAL_SECONDS": "1"}),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    try:
        assert process.stdout is not None
        first = json.loads(process.stdout.readline())
        settled_file(tmp_path, "b.csv", export_rows(2))  # exported while the watcher waits
        passes = [json.loads(process.stdout.readline()) for _ in range(2)]
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
    finally:
        process.kill()
    assert first["uploaded"] == 1
    assert sum(p["uploaded"] for p in passes) == 1  # b.csv, once, in a later pass
    assert set(blobs(incoming)) == {"a.csv", "b.csv"} and csv_names(tmp_path) == []
