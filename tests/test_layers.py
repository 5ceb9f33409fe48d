"""The import graph points downward only: each part of ``monitor`` imports only the parts below
it (the table is the module map in docs/architecture.md); the daemon never loads the simulator."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT

PACKAGE = ROOT / "monitor"
BASE = {"monitor", "monitor.config_errors", "monitor.logs"}

#: part -> the parts it may import (besides itself and the base modules)
MAY_IMPORT: dict[str, set[str]] = {
    "base": set(),
    "sendcloud": set(),
    "probes": set(),
    "health": {"sendcloud"},
    "store": {"sendcloud", "health", "probes"},
    "checks": {"sendcloud", "store", "probes"},
    "alerting": {"sendcloud", "health", "store", "probes"},
    "notify": {"sendcloud", "health", "store", "alerting"},
    "database": {"alerting", "notify"},
    "history": {"sendcloud", "health", "store", "probes", "alerting", "notify"},
    "exporter": {"sendcloud", "health", "store", "probes", "history"},
    "settings": {"sendcloud", "health", "alerting", "notify", "checks"},
    "poller": {"sendcloud", "health", "store", "settings"},
    "survey": {"sendcloud", "health", "store", "probes", "checks", "settings"},
    "schedule": {"settings"},
    "daemon": {
        "sendcloud",
        "health",
        "store",
        "probes",
        "checks",
        "alerting",
        "notify",
        "database",
        "history",
        "exporter",
        "settings",
        "poller",
        "survey",
        "schedule",
    },
    "simulator": {"health"},
    "cli": {
        "sendcloud",
        "health",
        "store",
        "probes",
        "checks",
        "alerting",
        "notify",
        "database",
        "history",
        "exporter",
        "settings",
        "poller",
        "survey",
        "schedule",
        "daemon",
        "simulator",
    },
    "__main__": {"cli"},
}

#: package -> its module -> the modules of the same package it may import: downward inside a
#: package too (the package's ``__init__`` re-exports; no module imports it)
WITHIN: dict[str, dict[str, set[str]]] = {
    "daemon": {
        "reload": set(),
        "sinks": set(),
        "web": set(),
        "positions": set(),
        "workers": set(),
        "probing": {"workers"},
        "lifecycle": {"reload", "sinks", "web", "positions", "workers", "probing"},
    },
}


def part(module: str) -> str:
    """The part a dotted module name belongs to: its first name below ``monitor``."""
    if module in BASE:
        return "base"
    return module.split(".")[1]


def module_name(path: Path, package: Path) -> str:
    parts = path.relative_to(package.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> set[str]:
    """Every ``monitor`` module ``path`` imports, at any depth (lazy imports included)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == "monitor"}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module.split(".")[0] != "monitor":
                continue
            if node.module == "monitor":  # from monitor import logs, __version__
                found |= {
                    f"monitor.{a.name}" if a.name != "__version__" else "monitor"
                    for a in node.names
                }
            else:
                found.add(node.module)
    return found


def violations(package: Path) -> list[str]:
    problems = []
    for path in sorted(package.rglob("*.py")):
        source = module_name(path, package)
        allowed = MAY_IMPORT[part(source)] | {part(source), "base"}
        for target in sorted(imports(path)):
            if part(target) not in allowed:
                problems.append(f"{source} imports {target}")
    return problems


def within_violations(package: Path, name: str) -> list[str]:
    """The imports of ``monitor.<name>``'s modules that point up, or sideways to a module not
    in their row of WITHIN (the package itself counts as above all its modules)."""
    problems = []
    prefix = f"monitor.{name}"
    for path in sorted((package / name).glob("*.py")):
        if path.stem == "__init__":
            continue
        allowed = {f"{prefix}.{m}" for m in WITHIN[name][path.stem]}
        for target in sorted(imports(path)):
            if (target == prefix or target.startswith(f"{prefix}.")) and target not in allowed:
                problems.append(f"{prefix}.{path.stem} imports {target}")
    return problems


def test_every_part_has_a_row_in_the_table() -> None:
    parts = {part(module_name(p, PACKAGE)) for p in PACKAGE.rglob("*.py")}
    assert parts == set(MAY_IMPORT)


def test_imports_point_downward_only() -> None:
    assert violations(PACKAGE) == []


def test_every_module_of_a_layered_package_has_a_row() -> None:
    for name, rows in WITHIN.items():
        modules = {p.stem for p in (PACKAGE / name).glob("*.py") if p.stem != "__init__"}
        assert set(rows) == modules, name


def test_imports_within_a_package_point_downward_only() -> None:
    assert [p for name in WITHIN for p in within_violations(PACKAGE, name)] == []


def test_the_check_within_a_package_catches_upward_imports(tmp_path: Path) -> None:
    fake = tmp_path / "monitor" / "daemon"
    fake.mkdir(parents=True)
    (fake / "workers.py").write_text("from monitor.daemon.probing import Probing\n")
    (fake / "probing.py").write_text("from monitor.daemon.workers import Worker\n")
    (fake / "web.py").write_text("def f():\n    from monitor.daemon import Daemon\n")
    assert within_violations(tmp_path / "monitor", "daemon") == [
        "monitor.daemon.web imports monitor.daemon",
        "monitor.daemon.workers imports monitor.daemon.probing",
    ]


def test_the_check_catches_a_lower_layer_importing_a_higher_one(tmp_path: Path) -> None:
    fake = tmp_path / "monitor" / "sendcloud"
    fake.mkdir(parents=True)
    (fake / "client.py").write_text("from monitor.alerting.rules import AlertRules\n")
    (fake / "oauth.py").write_text("def f():\n    from monitor.exporter import metrics\n")
    assert violations(tmp_path / "monitor") == [
        "monitor.sendcloud.client imports monitor.alerting.rules",
        "monitor.sendcloud.oauth imports monitor.exporter",
    ]


def test_the_daemon_never_loads_the_simulator() -> None:
    code = (
        "import sys, monitor.cli\n"
        "assert 'monitor.simulator' not in sys.modules, 'the simulator was imported'\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def module_map() -> dict[str, tuple[set[str], str]]:
    """The module map (docs/architecture.md): path -> (the submodules it names, its 'may
    import' cell)."""
    text = (ROOT / "docs" / "architecture.md").read_text()
    table = text.split("## Module map", 1)[1].split("\n\n")[2]
    rows = {}
    for line in table.splitlines()[2:]:
        module, responsibility, may = (cell.strip() for cell in line.strip("|").split("|"))
        for path in re.findall(r"`(monitor/[^`]+)`", module):
            rows[path] = (set(re.findall(r"`([a-z_]+)` \(", responsibility)), may)
    return rows


def test_the_module_map_matches_the_tree() -> None:
    rows = module_map()
    tree = {
        f"monitor/{p.name}/" if p.is_dir() else f"monitor/{p.name}"
        for p in PACKAGE.iterdir()
        if p.name not in ("__pycache__", "__init__.py", "__main__.py", "py.typed")
    }
    assert set(rows) == tree
    for path, (named, _) in rows.items():
        if path.endswith("/") and named:  # a subpackage: its modules, each named once
            modules = {p.stem for p in (ROOT / path).glob("*.py") if p.stem != "__init__"}
            assert named == modules, path
    for path, (_, may) in rows.items():
        listed = {m.strip() for m in may.split(",")}
        name = part(
            "monitor." + path.removeprefix("monitor/").removesuffix("/").removesuffix(".py")
        )
        if listed <= set(MAY_IMPORT) | {"base"}:
            assert listed - {"base"} == MAY_IMPORT[name], path


def test_the_module_map_names_a_layered_package_bottom_up() -> None:
    """The map names the modules of a package in WITHIN in an order each one's row allows:
    every module it may import is named before it."""
    text = (ROOT / "docs" / "architecture.md").read_text()
    for name in WITHIN:
        row = next(line for line in text.splitlines() if line.startswith(f"| `monitor/{name}/`"))
        named = re.findall(r"`([a-z_]+)` \(", row)
        assert sorted(named) == sorted(WITHIN[name]), name
        for i, module in enumerate(named):
            assert WITHIN[name][module] <= set(named[:i]), module


def test_the_contributor_guide_gives_the_same_layers() -> None:
    text = (ROOT / "docs" / "CONTRIBUTING.md").read_text()
    table = text.split("| layer | may import |", 1)[1].split("\n\n")[0]
    checked = set()
    for line in table.strip().splitlines()[1:]:
        layer, may = (cell.strip() for cell in line.strip("|").split("|"))
        listed = {m.strip() for m in may.split(",")}
        if not listed <= set(MAY_IMPORT) | {"base"}:
            continue  # "all of the above", "everything": prose, checked by the tree itself
        for name in re.findall(r"`([a-z_]+)(?:/|\.py)`", layer.split("—")[0]):
            assert listed - {"base"} == MAY_IMPORT[name], name
            checked.add(name)
    assert checked >= {"sendcloud", "health", "store", "alerting", "exporter", "settings", "poller"}


def confusable(names: list[str]) -> list[tuple[str, str]]:
    """Pairs of names that differ only by a short suffix (alerts/alerting, state/statefile)."""

    def shared(a: str, b: str) -> int:
        pairs = enumerate(zip(a, b, strict=False))
        return next((i for i, (x, y) in pairs if x != y), min(len(a), len(b)))

    ordered = sorted(set(names))
    return [
        (a, b)
        for i, a in enumerate(ordered)
        for b in ordered[i + 1 :]
        if shared(a, b) >= 4 and shared(a, b) >= min(len(a), len(b)) - 1
    ]


def test_no_two_module_names_differ_only_by_a_suffix() -> None:
    assert confusable(["alerts", "alerting", "state", "statefile", "server", "service"]) == [
        ("alerting", "alerts"),
        ("state", "statefile"),
    ]
    modules = [p.stem for p in PACKAGE.rglob("*.py") if p.stem not in ("__init__", "__main__")]
    packages = [p.name for p in PACKAGE.iterdir() if p.is_dir() and p.name != "__pycache__"]
    assert confusable(modules + packages) == []


def test_every_logger_is_named_after_its_module() -> None:
    """A log line's ``logger`` field says which module wrote it (sinks and the alerting
    service once shared one name)."""
    calls = [
        (path, node)
        for path in PACKAGE.rglob("*.py")
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.Call) and ast.unparse(node.func) == "structlog.get_logger"
    ]
    assert len(calls) >= 5
    named = [
        f"{module_name(path, PACKAGE)}: {ast.unparse(node)}"
        for path, node in calls
        if [ast.unparse(a) for a in node.args] != ["__name__"]
    ]
    assert named == []
