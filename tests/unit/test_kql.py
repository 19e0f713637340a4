"""Every Kusto query of the repository parses and binds against the Application Insights schema.

The queries live in the alert rules (infra/app/alerts.bicep), the workbook (infra/app/workbook.json) and
the runbook (docs/operations.md). Kusto's own language service (@kusto/language-service-next, from npm,
run by tools/kql_check.mjs) parses each one and resolves every table, column and function; a typo in a
column name or a pipe operator is an error here, before any portal sees it.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CHECKER = ROOT / "tools" / "kql_check.mjs"
SERVICE = ROOT / "node_modules" / "@kusto" / "language-service-next"

# Template placeholders and the values they take when deployed (or typed into the workbook).
PLACEHOLDERS = {"{threshold_seconds}": "1800", "{RunId}": "0123456789ab", "<run id>": "0123456789ab"}


def _filled(query: str) -> str:
    for placeholder, value in PLACEHOLDERS.items():
        query = query.replace(placeholder, value)
    return query


def alert_queries() -> dict[str, str]:
    text = (ROOT / "infra" / "app" / "alerts.bicep").read_text(encoding="utf-8")
    return {f"alerts.bicep {name}": body for name, body in re.findall(r"^var (\w+) = '''\n(.*?)'''", text, re.S | re.M)}


def workbook_queries() -> dict[str, str]:
    workbook = json.loads((ROOT / "infra" / "app" / "workbook.json").read_text(encoding="utf-8"))
    return {f"workbook {item['name']}": item["content"]["query"] for item in workbook["items"] if item["type"] == 3}


def docs_queries() -> dict[str, str]:
    text = (ROOT / "docs" / "operations.md").read_text(encoding="utf-8")
    return {f"operations.md query {i}": body for i, body in enumerate(re.findall(r"```kusto\n(.*?)```", text, re.S))}


def check(queries: dict[str, str]) -> dict[str, list[str]]:
    node = shutil.which("node")
    if node is None or not SERVICE.is_dir():
        pytest.fail("node and node_modules/@kusto/language-service-next are needed: run ./dev setup")
    payload = json.dumps([{"name": name, "query": _filled(query)} for name, query in queries.items()])
    done = subprocess.run([node, str(CHECKER)], input=payload, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return {item["name"]: [e["message"] for e in item["errors"]] for item in json.loads(done.stdout)}


@pytest.mark.parametrize("source", [alert_queries, workbook_queries, docs_queries], ids=lambda f: f.__name__)
def test_every_query_binds_against_application_insights(source) -> None:  # type: ignore[no-untyped-def]
    queries = source()
    assert len(queries) >= 5, f"{source.__name__} found only {sorted(queries)}"
    results = check(queries)
    assert set(results) == set(queries)
    assert {name: errors for name, errors in results.items() if errors} == {}


def test_the_check_finds_a_wrong_column_a_wrong_table_and_a_broken_pipe() -> None:
    results = check(
        {
            "column": "traces | where severity >= 3",
            "table": "trace | take 1",
            "syntax": "customMetrics | summarize by",
            "fine": "customMetrics | where name == 'bobo.files.failed' | summarize sum(valueSum)",
        }
    )
    assert results["column"] and results["table"] and results["syntax"]
    assert results["fine"] == []
