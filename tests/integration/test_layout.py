"""The package's architecture, read from its imports: families import only the families below
them (docs: README.md, Layout), no two modules import each other through any chain, and the old
import paths still work for one release, with a DeprecationWarning."""

from __future__ import annotations

import ast
import importlib
import subprocess
import sys
from pathlib import Path

import pytest

import rankjump
from rankjump import compat

PACKAGE = Path(rankjump.__file__).parent

# What each family may import (besides itself). The flow is one way: runtime and config at the
# bottom, then the model, the dynamics and the kernel; results and stats need only the model;
# simulation sits on the kernel and results; sweeps and rare events on simulation; plots on
# stats; the command line on everything.
CORE = {"runtime", "config", "model", "dynamics", "kernel", "results"}
ALLOWED = {
    "runtime": set(),
    "config": {"runtime"},
    "model": {"runtime", "config"},
    "dynamics": {"runtime", "config", "model"},
    "kernel": {"runtime", "config", "model", "dynamics"},
    "results": {"runtime", "config", "model"},
    "stats": {"runtime", "config", "model"},
    "simulation": CORE,
    "sweeps": CORE | {"simulation"},
    "rare_events": CORE | {"simulation", "stats"},
    "plots": {"runtime", "config", "model", "results", "stats"},
    "bench": CORE | {"simulation", "rare_events", "stats"},
    "cli": CORE | {"simulation", "sweeps", "rare_events", "stats", "plots", "bench", "<top>"},
}
UPPER = {"sweeps", "rare_events", "stats", "plots", "bench", "cli"}  # never in the simulation core


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in PACKAGE.rglob("*.py")}


def _imports(name: str) -> set[str]:
    """The rankjump modules ``name`` imports anywhere in its code (functions included): a
    ``from X import y`` names module X.y when it is one, else X."""
    out = set()
    for node in ast.walk(ast.parse(MODULES[name].read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                full = f"{node.module}.{alias.name}"
                target = full if full in MODULES else node.module
                if target.startswith("rankjump"):
                    out.add(target)
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name.startswith("rankjump"))
    out.discard(name)
    return out


GRAPH = {name: _imports(name) for name in MODULES}


def _family(name: str) -> str:
    parts = name.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in ALLOWED else "<top>"


def _climbs(graph) -> list[str]:
    """Imports of a family that its row of ALLOWED does not name."""
    return [
        f"{src} imports {dst}"
        for src, targets in graph.items()
        for dst in targets
        if _family(src) in ALLOWED
        and _family(dst) != _family(src)
        and _family(dst) not in ALLOWED[_family(src)]
    ]


def _circles(graph) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on_stack, circles = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                circles.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    return circles


def test_every_family_imports_only_the_families_below_it():
    unknown = sorted(n for n in MODULES if n.count(".") == 1 and _family(n) == "<top>")
    assert set(unknown) <= {"rankjump.__main__", "rankjump.compat"}, unknown
    assert not _climbs(GRAPH)


def test_the_simulation_core_imports_no_family_above_it():
    core = [n for n in MODULES if _family(n) in CORE | {"simulation"}]
    assert len(core) > 25  # the families named above hold most of the package
    above = [f"{n} imports {d}" for n in core for d in GRAPH[n] if _family(d) in UPPER]
    assert not above, above


def test_no_import_circle():
    """Every strongly connected component of the module graph is a single module (a package's
    __init__ imports its modules, which import their siblings directly, never the package)."""
    assert not _circles(GRAPH)


def test_the_checks_catch_a_planted_climb_and_circle():
    planted = {k: set(v) for k, v in GRAPH.items()}
    planted["rankjump.simulation.plan"].add("rankjump.rare_events.grid")
    planted["rankjump.model.tasks"].add("rankjump.config.whole")
    planted["rankjump.config.whole"].add("rankjump.model.tasks")
    assert "rankjump.simulation.plan imports rankjump.rare_events.grid" in _climbs(planted)
    assert "rankjump.config.whole imports rankjump.model.tasks" in _climbs(planted)
    assert any(
        {"rankjump.config.whole", "rankjump.model.tasks"} <= set(c) for c in _circles(planted)
    )


@pytest.mark.parametrize("old", sorted(compat.MODULES))
def test_every_old_module_path_is_its_new_module_with_a_warning(old):
    new = importlib.import_module(compat.MODULES[old])
    code = (
        "import warnings, importlib\n"
        "warnings.simplefilter('error')\n"
        "import rankjump\n"
        "try:\n"
        f"    importlib.import_module('rankjump.{old}')\n"
        "except DeprecationWarning as w:\n"
        "    print('warned:', w)\n"
        "warnings.simplefilter('ignore')\n"
        f"m = importlib.import_module('rankjump.{old}')\n"
        "print('module:', m.__name__)\n"
        "print('callable:', callable(rankjump.simulate), callable(rankjump.rare),"
        " callable(rankjump.sweep))\n"
    )
    if old != sorted(compat.MODULES)[0]:  # one fresh interpreter proves the mechanism
        with pytest.warns(DeprecationWarning, match=f"rankjump.{old} is deprecated"):
            sys.modules.pop(f"rankjump.{old}", None)
            got = importlib.import_module(f"rankjump.{old}")
        assert got is new
        assert callable(rankjump.simulate) and callable(rankjump.rare)
        return
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert f"warned: rankjump.{old} is deprecated" in out.stdout
    assert f"module: {new.__name__}" in out.stdout
    assert "callable: True True True" in out.stdout


@pytest.mark.parametrize("name", sorted(compat.NAMES))
def test_old_top_level_names_warn_and_point_to_their_new_home(name):
    with pytest.warns(DeprecationWarning, match=f"rankjump.{name} is deprecated"):
        got = getattr(rankjump, name)
    assert got is getattr(importlib.import_module(compat.NAMES[name]), name)


def test_from_an_old_module_import_a_name_as_the_notebooks_did():
    with pytest.warns(DeprecationWarning):
        sys.modules.pop("rankjump.simulate", None)
        from rankjump.simulate import simulate as old_simulate
    assert old_simulate is rankjump.simulate  # and the top-level function is still a function


def test_the_top_level_exports_the_entry_points_and_the_families():
    public = set(rankjump.__all__)
    assert {
        "simulate",
        "sweep",
        "rare",
        "replay",
        "analyze",
        "load_result",
        "save_result",
    } <= public
    assert {"Config", "load_config", "demo_config"} <= public
    assert set(ALLOWED) <= public
    assert not public & set(compat.NAMES)  # engine pieces live in their subpackage
    for name in public:
        assert getattr(rankjump, name) is not None
