"""The azd hooks (infra/hooks/*.sh) driven through a stand-in `az` (fake_az.py), without Azure.

Each test runs the real hook with `sh`, a PATH whose `az` is the stand-in and whose `curl` does nothing,
and poll intervals of zero (the hooks read them from BOBO_HOOK_*; the defaults are the production values).
What is checked is what the hook asked az to do, recorded call by call, and what it told the operator.
The PowerShell hooks are not run here: no registry this project can reach ships pwsh (docs/deployment.md).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
HOOKS = ROOT / "infra" / "hooks"
SUBSCRIPTION = "11111111-2222-3333-4444-555555555555"
OTHER_SUBSCRIPTION = "99999999-8888-7777-6666-555555555555"
KEY = "c2VjcmV0LWJsb2ItZXh0ZW5zaW9uLWtleQ=="
SECRET_VALUE = "hunter2-not-for-logs"
URL_PREFIX = f"/subscriptions/{SUBSCRIPTION}/"

pytestmark = pytest.mark.skipif(shutil.which("sh") is None, reason="no POSIX sh on this machine")


@dataclass
class HookRun:
    returncode: int
    stdout: str
    stderr: str
    calls: list[dict[str, Any]]
    state: dict[str, Any]

    def commands(self, *prefix: str) -> list[list[str]]:
        return [call["argv"] for call in self.calls if call["argv"][: len(prefix)] == list(prefix)]

    def rest(self, method: str, path_part: str) -> list[dict[str, Any]]:
        return [
            call
            for call in self.calls
            if call["argv"][:1] == ["rest"] and _option(call["argv"], "--method") == method and path_part in _url(call)
        ]


def _option(argv: list[str], name: str) -> str | None:
    return argv[argv.index(name) + 1] if name in argv else None


def _url(call: dict[str, Any]) -> str:
    return _option(call["argv"], "--url") or ""


class HookBench:
    """A scratch folder with the stand-in az and curl, the scenario, and az's recorded calls and state."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.bin = folder / "bin"
        self.bin.mkdir()
        self.tmp = folder / "tmp"
        self.tmp.mkdir()
        az = self.bin / "az"
        az.write_text(
            f"#!{sys.executable} -S\nimport runpy, sys\nsys.argv[0] = 'az'\n"
            f"runpy.run_path({str(Path(__file__).with_name('fake_az.py'))!r}, run_name='__main__')\n"
        )
        curl = self.bin / "curl"
        curl.write_text("#!/bin/sh\nexit 0\n")
        for tool in (az, curl):
            tool.chmod(0o755)
        self.log = folder / "az-calls.jsonl"
        self.state_file = folder / "az-state.json"
        self.scenario_file = folder / "scenario.json"
        self.scenario: dict[str, Any] = {"resource_subscription": SUBSCRIPTION, "key": KEY}
        self.env: dict[str, str] = {
            "PATH": f"{self.bin}{os.pathsep}/usr/bin{os.pathsep}/bin",
            "TMPDIR": str(self.tmp),
            "FAKE_AZ_LOG": str(self.log),
            "FAKE_AZ_STATE": str(self.state_file),
            "FAKE_AZ_SCENARIO": str(self.scenario_file),
            # What azd hands a hook: its own values and main.bicep's outputs.
            "AZURE_SUBSCRIPTION_ID": SUBSCRIPTION,
            "AZURE_RESOURCE_GROUP": "rg-bobo-test",
            "AZURE_FUNCTION_APP_NAME": "func-bobo-abc",
            "AZURE_FUNCTION_APP_HOSTNAME": "func-bobo-abc.azurewebsites.net",
            "BOBO_EVENTGRID_SYSTEM_TOPIC_NAME": "evgt-bobo-abc",
            "BOBO_INCOMING_CONTAINER_NAME": "bobo-incoming",
            "AZURE_KEY_VAULT_NAME": "kv-abc",
            "ATHOC_CLIENT_SECRET_KV_NAME": "athoc-client-secret",
            "ATHOC_PASSWORD_KV_NAME": "athoc-password",
            "BOBO_HOOK_KEY_INTERVAL_SECONDS": "0",
            "BOBO_HOOK_STATE_INTERVAL_SECONDS": "0",
            "BOBO_HOOK_KV_INTERVAL_SECONDS": "0",
        }

    def start(self, hook: str, **env: str) -> subprocess.Popen[str]:
        self.scenario_file.write_text(json.dumps(self.scenario), encoding="utf-8")
        return subprocess.Popen(
            ["sh", str(HOOKS / hook)],
            cwd=ROOT,
            env={**self.env, **env},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,  # its own process group, like a terminal's foreground job
            # A shell cannot trap a signal ignored at its start; CI may start tests with SIGINT ignored.
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )

    def finish(self, process: subprocess.Popen[str]) -> HookRun:
        stdout, stderr = process.communicate(timeout=120)
        return HookRun(process.returncode, stdout, stderr, self.calls(), self.state())

    def run(self, hook: str, **env: str) -> HookRun:
        return self.finish(self.start(hook, **env))

    def calls(self) -> list[dict[str, Any]]:
        if not self.log.exists():
            return []
        # Only whole lines: a call may be writing its record while a test polls.
        *complete, _unfinished = self.log.read_text(encoding="utf-8").split("\n")
        return [json.loads(line) for line in complete]

    def state(self) -> dict[str, Any]:
        return json.loads(self.state_file.read_text(encoding="utf-8")) if self.state_file.exists() else {}

    def reset_calls(self) -> None:
        self.log.unlink(missing_ok=True)


@pytest.fixture
def bench(tmp_path: Path) -> HookBench:
    return HookBench(tmp_path)


def assert_every_call_names_the_subscription(run: HookRun) -> None:
    assert run.calls, "the hook called az not once"
    for call in run.calls:
        argv = call["argv"]
        if argv[0] == "rest":  # az rest takes its target from the URL alone
            assert _url(call).startswith(URL_PREFIX), argv
        else:
            assert _option(argv, "--subscription") == SUBSCRIPTION, argv


def assert_no_secret_leaked(run: HookRun) -> None:
    for call in run.calls:
        assert KEY not in " ".join(call["argv"]), "the key was on a command line"
        assert SECRET_VALUE not in " ".join(call["argv"])
    for text in (run.stdout, run.stderr):
        assert KEY not in text and SECRET_VALUE not in text


def put_bodies(run: HookRun) -> list[dict[str, Any]]:
    return [json.loads(call["body"]) for call in run.rest("put", "/eventSubscriptions/")]


# --- postdeploy ------------------------------------------------------------------------------------------


def test_clean_postdeploy_creates_the_subscription(bench: HookBench) -> None:
    run = bench.run("postdeploy.sh")
    assert run.returncode == 0, run.stderr
    assert run.commands("account", "show") == [run.calls[0]["argv"]], "the login check comes first"
    assert_every_call_names_the_subscription(run)
    assert_no_secret_leaked(run)
    (body,) = put_bodies(run)
    destination = body["properties"]["destination"]["properties"]["endpointUrl"]
    assert destination == (
        "https://func-bobo-abc.azurewebsites.net/runtime/webhooks/blobs"
        f"?functionName=Host.Functions.ingest_csv&code={KEY}"
    )
    event_filter = body["properties"]["filter"]
    assert event_filter["includedEventTypes"] == ["Microsoft.Storage.BlobCreated"]
    assert event_filter["subjectBeginsWith"] == "/blobServices/default/containers/bobo-incoming/blobs/"
    assert "advancedFilters" not in event_filter, "every API that completes a blob must get through"
    assert list(run.state["event_subscriptions"]) == [
        f"{URL_PREFIX}resourceGroups/rg-bobo-test/providers/Microsoft.EventGrid/systemTopics/evgt-bobo-abc"
        "/eventSubscriptions/bobo-incoming-to-ingest-csv"
    ]
    assert "Event Grid subscription ready" in run.stdout
    assert list(bench.tmp.iterdir()) == [], "the hook left its scratch files (the body holds the key)"


def test_second_postdeploy_run_is_idempotent(bench: HookBench) -> None:
    first = bench.run("postdeploy.sh")
    bench.reset_calls()
    second = bench.run("postdeploy.sh")
    assert (first.returncode, second.returncode) == (0, 0), second.stderr
    assert put_bodies(first) == put_bodies(second)
    assert len(second.state["event_subscriptions"]) == 1
    creating = [argv for call in second.calls if (argv := call["argv"])[:1] != ["rest"] and "create" in argv]
    assert creating == [], "a second run must not create anything new"


@pytest.mark.parametrize(
    ("scenario", "az_says"),
    [
        ({"subscriptions": [OTHER_SUBSCRIPTION], "default_subscription": OTHER_SUBSCRIPTION}, "not found"),
        ({"logged_in": False}, "Please run 'az login'"),
    ],
    ids=["wrong-subscription", "not-logged-in"],
)
@pytest.mark.parametrize("hook", ["postdeploy.sh", "postprovision.sh"])
def test_az_without_the_subscription_fails_fast(
    bench: HookBench, hook: str, scenario: dict[str, Any], az_says: str
) -> None:
    bench.scenario.update(scenario)
    run = bench.run(hook, BOBO_HOOK_KEY_TRIES="5")
    assert run.returncode == 1
    assert len(run.calls) == 1, f"expected to stop after the login check, az was called {len(run.calls)} times"
    assert az_says in run.stderr, "az's own message must reach the operator"
    assert "az login" in run.stderr and SUBSCRIPTION in run.stderr, "the fix must be named"


def test_absent_subscription_id_is_named(bench: HookBench) -> None:
    run = bench.run("postdeploy.sh", AZURE_SUBSCRIPTION_ID="")
    assert run.returncode == 1
    assert "AZURE_SUBSCRIPTION_ID is not set" in run.stderr
    assert run.calls == []


def test_key_that_appears_after_some_tries(bench: HookBench) -> None:
    bench.scenario["key_after"] = 4
    run = bench.run("postdeploy.sh")
    assert run.returncode == 0, run.stderr
    assert len(run.commands("functionapp", "keys", "list")) == 4
    assert len(put_bodies(run)) == 1


def test_key_that_never_appears_fails_after_the_tries(bench: HookBench) -> None:
    bench.scenario["key_after"] = 100
    run = bench.run("postdeploy.sh", BOBO_HOOK_KEY_TRIES="3")
    assert run.returncode == 1
    assert len(run.commands("functionapp", "keys", "list")) == 3
    assert "no blobs_extension key after 3 tries" in run.stderr
    assert put_bodies(run) == []


def test_readiness_comes_from_the_put_answer(bench: HookBench) -> None:
    # Event Grid answers the PUT with Updating; the hook waits through the GETs until Succeeded.
    bench.scenario.update({"put_state": "Updating", "get_states": ["Updating", "Updating", "Succeeded"]})
    run = bench.run("postdeploy.sh")
    assert run.returncode == 0, run.stderr
    assert len(run.rest("get", "/eventSubscriptions/")) == 3


def test_a_failed_put_is_not_masked_by_an_older_state(bench: HookBench) -> None:
    bench.scenario.update({"put_state": "Failed", "get_states": ["Succeeded"]})
    run = bench.run("postdeploy.sh")
    assert run.returncode == 1
    assert "'Failed'" in run.stderr
    assert run.rest("get", "/eventSubscriptions/") == [], "the PUT's own answer decides"


def test_readiness_poll_gives_up(bench: HookBench) -> None:
    bench.scenario.update({"put_state": "Creating", "get_states": ["Creating"] * 10})
    run = bench.run("postdeploy.sh", BOBO_HOOK_STATE_TRIES="4")
    assert run.returncode == 1
    assert len(run.rest("get", "/eventSubscriptions/")) == 3
    assert "still 'Creating' after 4 checks" in run.stderr


@pytest.mark.parametrize("target", ["process-group", "shell-only"])
def test_ctrl_c_stops_the_hook(bench: HookBench, target: str) -> None:
    # A terminal's Ctrl-C reaches the whole foreground group; the shell alone must stop as well.
    bench.scenario["key_after"] = 10_000
    tries = 200
    process = bench.start("postdeploy.sh", BOBO_HOOK_KEY_TRIES=str(tries), BOBO_HOOK_KEY_INTERVAL_SECONDS="0.05")
    while len(bench.calls()) < 3 and process.poll() is None:
        time.sleep(0.05)
    assert process.poll() is None, "the hook ended before it could be interrupted"
    if target == "process-group":
        os.killpg(process.pid, signal.SIGINT)
    else:
        os.kill(process.pid, signal.SIGINT)
    run = bench.finish(process)
    assert run.returncode == 130, f"exit {run.returncode}: {run.stderr[-300:]}"
    assert len(run.commands("functionapp", "keys", "list")) < tries, "the hook went on polling after Ctrl-C"
    assert list(bench.tmp.iterdir()) == [], "scratch files left behind"


# --- postprovision ---------------------------------------------------------------------------------------


def test_first_provision_leaves_the_subscription_to_postdeploy(bench: HookBench) -> None:
    bench.scenario["key_after"] = 100  # no code deployed yet
    run = bench.run("postprovision.sh")
    assert run.returncode == 0, run.stderr
    assert put_bodies(run) == []
    assert len(run.commands("functionapp", "keys", "list")) == 1, "no long wait before the code exists"
    assert "postdeploy creates it" in run.stdout
    assert_every_call_names_the_subscription(run)


def test_provision_moves_the_subscription_to_a_renamed_container(bench: HookBench) -> None:
    assert bench.run("postdeploy.sh").returncode == 0
    bench.reset_calls()
    run = bench.run("postprovision.sh", BOBO_INCOMING_CONTAINER_NAME="bobo-inbox")
    assert run.returncode == 0, run.stderr
    (body,) = put_bodies(run)
    assert body["properties"]["filter"]["subjectBeginsWith"] == "/blobServices/default/containers/bobo-inbox/blobs/"
    (stored,) = run.state["event_subscriptions"].values()
    assert stored == body
    assert_every_call_names_the_subscription(run)


def test_provision_with_secrets_restarts_until_references_resolve(bench: HookBench) -> None:
    bench.scenario.update({"kv_resolved_after_restarts": 2, "key_after": 100})
    run = bench.run("postprovision.sh", ATHOC_CLIENT_SECRET=SECRET_VALUE, ATHOC_PASSWORD=SECRET_VALUE)
    assert run.returncode == 0, run.stderr
    assert len(run.commands("functionapp", "restart")) == 2
    checked = {_url(call).split("/appsettings/")[1].split("?")[0] for call in run.rest("get", "/configreferences/")}
    assert checked == {"ATHOC_CLIENT_SECRET", "ATHOC_PASSWORD"}
    assert "Key Vault references resolved" in run.stdout
    assert_no_secret_leaked(run)
    assert_every_call_names_the_subscription(run)


def test_provision_with_secrets_fails_when_references_stay_unresolved(bench: HookBench) -> None:
    bench.scenario["kv_resolved_after_restarts"] = 100
    run = bench.run("postprovision.sh", ATHOC_PASSWORD=SECRET_VALUE, BOBO_HOOK_KV_TRIES="3")
    assert run.returncode == 1
    assert len(run.commands("functionapp", "restart")) == 3
    assert "AccessToKeyVaultDenied" in run.stderr
    assert_no_secret_leaked(run)


def test_provision_without_secrets_reminds_instead_of_restarting(bench: HookBench) -> None:
    bench.scenario["secrets"] = ["athoc-client-secret"]
    run = bench.run("postprovision.sh")
    assert run.returncode == 0, run.stderr
    assert run.commands("functionapp", "restart") == []
    assert "'athoc-password' is missing" in run.stdout
    assert "'athoc-client-secret' is missing" not in run.stdout
