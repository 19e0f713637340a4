"""The Bicep files as data, parsed with pycep (a Bicep parser from PyPI), for the structure tests.

Bicep itself cannot be compiled here (its CLI comes only from NuGet and GitHub), so these checks read the
templates' structure: symbols, modules and their parameters and outputs, resources and their properties.
pycep renders an identifier and a string literal alike (`name: foo` and `name: 'foo'` both give "foo");
a string that names a declared symbol of its file is taken as that symbol.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from pycep import BicepParser

ROOT = Path(__file__).resolve().parents[2]
INFRA = ROOT / "infra"
MAIN = INFRA / "main.bicep"
INTERPOLATED_OUTPUT = re.compile(r"\b([A-Za-z_]\w*)\.outputs\.([A-Za-z_]\w*)")


@cache
def _parser() -> BicepParser:
    return BicepParser(cache=False)  # no grammar cache file in a shared temporary folder


def parse_text(text: str) -> dict[str, Any]:
    return _parser().parse(text=text)


@dataclass(frozen=True)
class BicepFile:
    path: Path
    tree: Mapping[str, Any]

    @classmethod
    def load(cls, path: Path) -> BicepFile:
        return cls(path, parse_file(path))

    def section(self, name: str) -> Mapping[str, Any]:
        return self.tree.get(name) or {}

    @property
    def parameters(self) -> Mapping[str, Any]:
        return self.section("parameters")

    @property
    def variables(self) -> Mapping[str, Any]:
        return self.section("variables")

    @property
    def resources(self) -> Mapping[str, Any]:
        return self.section("resources")

    @property
    def modules(self) -> Mapping[str, Any]:
        return self.section("modules")

    @property
    def outputs(self) -> Mapping[str, Any]:
        return self.section("outputs")

    def symbols(self) -> set[str]:
        return {*self.parameters, *self.variables, *self.resources, *self.modules}

    def module_config(self, name: str) -> Mapping[str, Any]:
        """A module's body, under its `if (...)` condition when it has one."""
        config = self.modules[name]["config"]
        return config["config"] if "condition" in config and "config" in config else config

    def module_file(self, name: str) -> Path:
        return (self.path.parent / self.modules[name]["detail"]["path"]).resolve()

    def resource_config(self, name: str) -> Mapping[str, Any]:
        """A resource's body, inside a loop or condition when it has one."""
        config = self.resources[name]["config"]
        while "config" in config and ("loop_type" in config or "condition" in config):
            config = config["config"]
        return config


@cache
def parse_file(path: Path) -> Mapping[str, Any]:
    return _parser().parse(file_path=path)


def bicep_files() -> list[Path]:
    return sorted(INFRA.rglob("*.bicep"))


def walk(node: Any) -> Iterator[Any]:
    """Every value in a parsed tree, depth first."""
    yield node
    if isinstance(node, Mapping):
        for child in node.values():
            yield from walk(child)
    elif isinstance(node, list):
        for child in node:
            yield from walk(child)


def operator_of(node: Any, kind: str) -> Mapping[str, Any] | None:
    """The operands of a `kind` expression (property_accessor, conditional...), else None. An object
    literal with a property called `operator` (alert rules have one) is not an expression."""
    operator = node.get("operator") if isinstance(node, Mapping) else None
    return operator["operands"] if isinstance(operator, Mapping) and operator.get("type") == kind else None


def accessor_chain(node: Any) -> list[str] | None:
    """`a.b.c` as ["a", "b", "c"], or None when `node` is not a property access of plain names."""
    if isinstance(node, str):
        return [node]
    operands = operator_of(node, "property_accessor")
    if operands is not None:
        head, tail = accessor_chain(operands["operand_1"]), accessor_chain(operands["operand_2"])
        return head + tail if head is not None and tail is not None else None
    return None


def module_output_references(node: Any) -> set[tuple[str, str]]:
    """Every `<module>.outputs.<name>` used in `node`, as property accesses or inside interpolated strings."""
    found: set[tuple[str, str]] = set()
    for value in walk(node):
        chain = accessor_chain(value) if isinstance(value, Mapping) else None
        if chain and len(chain) >= 3 and chain[1] == "outputs":
            found.add((chain[0], chain[2]))
        if isinstance(value, str):
            found.update(INTERPOLATED_OUTPUT.findall(value))
    return found


def is_secure(parameter: Mapping[str, Any]) -> bool:
    return any(decorator.get("type") == "secure" for decorator in parameter.get("decorators", []))


def object_keys(file: BicepFile, node: Any, callers: Mapping[Path, BicepFile]) -> set[str]:
    """The keys an object expression can hold: literals, variables, `union(...)`, `loadJsonContent(...)`,
    and parameters, followed into the one module call that sets them (`callers`: file -> caller)."""
    if isinstance(node, Mapping) and "function" in node:
        function = node["function"]
        if function["type"] == "union":
            return set().union(*(object_keys(file, arg, callers) for arg in function["parameters"].values()))
        if function["type"] == "load_json_content":
            import json

            path = file.path.parent / function["parameters"]["file_path"]
            return set(json.loads(path.read_text(encoding="utf-8")))
        raise ValueError(f"{file.path.name}: cannot follow {function['type']}() to the keys it returns")
    if isinstance(node, str) and node in file.variables:
        return object_keys(file, file.variables[node]["value"], callers)
    if isinstance(node, str) and node in file.parameters:
        caller = callers.get(file.path)
        if caller is None:
            return set()  # a top-level parameter (e.g. appSettingOverrides): its keys come from the operator
        (module,) = [name for name in caller.modules if caller.module_file(name) == file.path]
        passed = caller.module_config(module)["params"].get(node)
        return object_keys(caller, passed, callers) if passed is not None else set()
    if isinstance(node, Mapping) and not isinstance(node.get("operator"), Mapping) and "function" not in node:
        return {key.strip("'") for key in node}
    raise ValueError(f"{file.path.name}: cannot read object keys from {node!r}")
