"""What azd packages (.funcignore) and the shell scripts' lint (shellcheck), offline.

azd uses only .funcignore when one exists, so it alone keeps virtual environments and locally installed
packages out of the deployment package (remote build installs requirements.txt in Azure).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pathspec
import pytest

ROOT = Path(__file__).resolve().parents[2]
SKIP_DIRS = {".git", ".venv", "node_modules", ".azurite", ".pytest_cache", ".ruff_cache", ".mypy_cache"}

MUST_BE_EXCLUDED = [
    ".python_packages/lib/site-packages/requests/__init__.py",
    ".venv/bin/python",
    ".venv-3.11/bin/python",
    "venv/bin/python",
    "venv311/bin/python",
    "env/bin/python",
    "bobo-sync-azure_env/bin/python",  # the <folder>_env virtual environment some azd versions create
    ".env",
    "local.settings.json",
    "tests/unit/test_settings.py",
    "infra/main.bicep",
    ".azure/prod/.env",
    "shared/__pycache__/settings.cpython-311.pyc",
]
MUST_BE_PACKAGED = [
    "function_app.py",
    "host.json",
    "requirements.txt",
    "functions/ingest.py",
    "shared/settings.py",
    "shared/pipeline.py",
]


def funcignore() -> pathspec.PathSpec:
    lines = (ROOT / ".funcignore").read_text(encoding="utf-8").splitlines()
    return pathspec.GitIgnoreSpec.from_lines(lines)


def packaging_problems(spec: pathspec.PathSpec) -> list[str]:
    problems = [f"{path} would be deployed" for path in MUST_BE_EXCLUDED if not spec.match_file(path)]
    problems += [f"{path} would be left out of the package" for path in MUST_BE_PACKAGED if spec.match_file(path)]
    return problems


def test_funcignore_keeps_environments_out_and_the_app_in() -> None:
    assert packaging_problems(funcignore()) == []


def test_packaging_check_can_fail() -> None:
    problems = packaging_problems(pathspec.GitIgnoreSpec.from_lines(["tests", "*.py"]))
    assert ".venv/bin/python would be deployed" in problems
    assert "function_app.py would be left out of the package" in problems


def shell_scripts() -> list[Path]:
    """Every *.sh file and every file whose first line runs sh or bash, outside tool folders."""
    found = []
    for path in sorted(ROOT.rglob("*")):
        if not path.is_file() or SKIP_DIRS.intersection(path.relative_to(ROOT).parts):
            continue
        if path.suffix == ".sh":
            found.append(path)
            continue
        with path.open("rb") as handle:
            first = handle.readline(100)
        if first.startswith(b"#!") and (first.rstrip().endswith((b"/sh", b"/bash", b" sh", b" bash"))):
            found.append(path)
    return found


def test_the_scripts_are_found() -> None:
    names = {path.relative_to(ROOT).as_posix() for path in shell_scripts()}
    assert {"dev", ".ci/run", "infra/hooks/postdeploy.sh", "infra/hooks/postprovision.sh"} <= names


def shellcheck(paths: list[Path]) -> subprocess.CompletedProcess[str]:
    executable = shutil.which("shellcheck")
    if executable is None:
        pytest.skip("shellcheck is not installed (./dev test installs Debian's package when it can)")
    return subprocess.run(
        [executable, "--external-sources", "--format=gcc", *(str(path.relative_to(ROOT)) for path in paths)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_shellcheck_passes_on_every_shell_script() -> None:
    result = shellcheck(shell_scripts())
    assert result.returncode == 0, result.stdout + result.stderr


def test_shellcheck_can_fail(tmp_path: Path) -> None:
    broken = ROOT / "infra" / "hooks" / f".shellcheck-probe-{tmp_path.name}.sh"
    broken.write_text("#!/bin/sh\nfor f in $(ls *.csv); do rm $f; done\n", encoding="utf-8")
    try:
        result = shellcheck([broken])
    finally:
        broken.unlink()
    assert result.returncode != 0
    assert "SC2045" in result.stdout or "SC2086" in result.stdout


def test_the_workflow_runs_the_checks_that_need_bicep_or_azure() -> None:
    workflow = (ROOT / ".github" / "workflows" / "infra.yml").read_text(encoding="utf-8")
    for command in ("az bicep build", "az bicep lint", "az deployment sub validate", "azd provision --preview"):
        assert command in workflow, f"the infra workflow no longer runs {command}"
