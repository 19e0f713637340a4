"""A stand-in for the Azure CLI (`az`) that the hook tests put first on PATH.

It records every call (argv, plus the body file a `--body @FILE` names, read before the hook deletes
it) to FAKE_AZ_LOG as JSON lines, answers from the scenario in FAKE_AZ_SCENARIO, and keeps what a
real subscription would keep between calls and between hook runs (Event Grid subscriptions, restarts,
how often the key was asked for) in FAKE_AZ_STATE. Resources exist only in the scenario's
`resource_subscription`: a call aimed at another subscription gets the error real az would give.
An unknown command exits 2, so a hook that calls something new fails its test instead of passing.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

NOT_FOUND = 'ERROR: Not Found({"error":{"code":"ResourceNotFound","message":"The resource was not found."}})'


def option(argv: list[str], name: str) -> str | None:
    return argv[argv.index(name) + 1] if name in argv and argv.index(name) + 1 < len(argv) else None


class FakeAz:
    def __init__(self, scenario: dict[str, Any], state: dict[str, Any]) -> None:
        self.scenario = scenario
        self.state = state

    def run(self, argv: list[str]) -> tuple[int, str, str]:
        if not self.scenario.get("logged_in", True):
            return 1, "", "ERROR: Please run 'az login' to setup account."
        subscription = option(argv, "--subscription") or self.scenario.get("default_subscription", "")
        known = self.scenario.get("subscriptions", [self.scenario["resource_subscription"]])
        if argv[:1] != ["rest"] and subscription not in known:
            return (
                1,
                "",
                f"ERROR: Subscription '{subscription}' not found. Check the spelling and casing and try again.",
            )
        if argv[:2] == ["account", "show"]:
            return 0, subscription + "\n", ""
        if argv[:1] == ["rest"]:
            return self.rest(argv)
        if subscription != self.scenario["resource_subscription"]:
            group = option(argv, "--resource-group")
            return 1, "", f"ERROR: (ResourceGroupNotFound) Resource group '{group}' could not be found."
        if argv[:3] == ["functionapp", "keys", "list"]:
            self.state["key_calls"] = self.state.get("key_calls", 0) + 1
            if self.state["key_calls"] >= self.scenario.get("key_after", 1):
                return 0, self.scenario["key"] + "\n", ""
            return 0, "\n", ""
        if argv[:2] == ["functionapp", "restart"]:
            self.state["restarts"] = self.state.get("restarts", 0) + 1
            return 0, "", ""
        if argv[:3] == ["keyvault", "secret", "list"]:
            return 0, "".join(f"{name}\n" for name in self.scenario.get("secrets", [])), ""
        return 2, "", f"fake az: unhandled command {argv}"

    def rest(self, argv: list[str]) -> tuple[int, str, str]:
        url = option(argv, "--url") or ""
        path = url.split("?", 1)[0]
        if not path.startswith(f"/subscriptions/{self.scenario['resource_subscription']}/"):
            return 1, "", "ERROR: (SubscriptionNotFound) The subscription could not be found."
        method = option(argv, "--method")
        subscriptions: dict[str, Any] = self.state.setdefault("event_subscriptions", {})
        if "/eventSubscriptions/" in path:
            if method == "put":
                body_file = (option(argv, "--body") or "").removeprefix("@")
                subscriptions[path] = json.loads(Path(body_file).read_text(encoding="utf-8"))
                return 0, self.scenario.get("put_state", "Creating") + "\n", ""
            if method == "get":
                if path not in subscriptions:
                    return 1, "", NOT_FOUND
                states = self.state.setdefault("get_states", list(self.scenario.get("get_states", [])))
                return 0, (states.pop(0) if states else "Succeeded") + "\n", ""
        if "/config/configreferences/appsettings/" in path and method == "get":
            resolved = self.state.get("restarts", 0) >= self.scenario.get("kv_resolved_after_restarts", 1)
            return 0, ("Resolved" if resolved else "AccessToKeyVaultDenied") + "\n", ""
        return 2, "", f"fake az: unhandled rest call {argv}"


def main(argv: list[str]) -> int:
    # Ctrl-C tests signal the hook's whole process group: finish this call rather than leave half a record.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    scenario = json.loads(Path(os.environ["FAKE_AZ_SCENARIO"]).read_text(encoding="utf-8"))
    state_path = Path(os.environ["FAKE_AZ_STATE"])
    state = json.loads(state_path.read_text(encoding="utf-8")) if state_path.exists() else {}
    record: dict[str, Any] = {"argv": argv}
    body = option(argv, "--body")
    if body and body.startswith("@"):
        record["body"] = Path(body[1:]).read_text(encoding="utf-8")
    with open(os.environ["FAKE_AZ_LOG"], "a", encoding="utf-8") as log:
        log.write(json.dumps(record) + "\n")
    code, out, err = FakeAz(scenario, state).run(argv)
    partial = state_path.with_suffix(".partial")
    partial.write_text(json.dumps(state), encoding="utf-8")
    partial.replace(state_path)
    sys.stdout.write(out)
    sys.stderr.write(err + ("\n" if err else ""))
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
