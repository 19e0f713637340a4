"""Index the app the way the Python worker does and check it against the contract's function table."""

from __future__ import annotations

import importlib
import sys

import pytest

EXPECTED = {
    "ingest_csv": {
        "type": "blobTrigger",
        "path": "%BOBO_INCOMING_CONTAINER%/{name}",
        "connection": "BOBO_STORAGE",
    },
    "sweep_incoming": {"type": "timerTrigger", "schedule": "%BOBO_SWEEP_SCHEDULE%"},
    "sync_mappings": {"type": "timerTrigger", "schedule": "%BOBO_MAPPING_SCHEDULE%"},
    "clear_stale_duty": {"type": "timerTrigger", "schedule": "%BOBO_CLEANUP_SCHEDULE%"},
    "health": {"type": "httpTrigger", "auth_level": "anonymous", "route": "health", "methods": ["GET"]},
    "status": {"type": "httpTrigger", "auth_level": "function", "route": "status", "methods": ["GET"]},
}


def index(monkeypatch: pytest.MonkeyPatch, source: str | None = None) -> dict[str, dict]:
    if source is None:
        monkeypatch.delenv("BOBO_BLOB_TRIGGER_SOURCE", raising=False)
    else:
        monkeypatch.setenv("BOBO_BLOB_TRIGGER_SOURCE", source)
    for module in ("function_app", "functions.ingest", "functions.maintenance", "functions.http"):
        sys.modules.pop(module, None)
    app = importlib.import_module("function_app").app
    functions = app.get_functions()
    assert functions, "0 functions loaded"
    indexed = {}
    for function in functions:
        description = function.get_dict_repr()
        trigger = next(b for b in description["bindings"] if b["type"].endswith("Trigger"))
        indexed[function.get_function_name()] = trigger
    return indexed


def test_contract_function_table(monkeypatch: pytest.MonkeyPatch) -> None:
    indexed = index(monkeypatch)
    assert set(indexed) == set(EXPECTED)
    for name, expected in EXPECTED.items():
        trigger = indexed[name]
        for key, value in expected.items():
            actual = trigger.get("authLevel" if key == "auth_level" else key)
            if key == "auth_level":
                actual = str(actual).lower()
            if key == "methods":
                actual = [str(m).upper() for m in actual]
            assert actual == value, f"{name}.{key}: {actual!r} != {value!r}"
    for name in ("sweep_incoming", "sync_mappings", "clear_stale_duty"):
        assert indexed[name].get("runOnStartup") is False


def test_blob_source_read_at_indexing(monkeypatch: pytest.MonkeyPatch) -> None:
    assert index(monkeypatch)["ingest_csv"]["source"] == "EventGrid"
    assert index(monkeypatch, "LogsAndContainerScan")["ingest_csv"]["source"] == "LogsAndContainerScan"


def test_import_makes_no_network_or_settings_demand(monkeypatch: pytest.MonkeyPatch) -> None:
    # Indexing happens before app settings are validated: no required setting may be read at import.
    for name in ("ATHOC_SERVER_URL", "BOBO_STORAGE", "ATHOC_PASSWORD"):
        monkeypatch.delenv(name, raising=False)
    assert len(index(monkeypatch)) == len(EXPECTED)
