"""The package's plan holds: imports flow one way between layers, no module imports another's
private names across subpackages, there are no import circles, and the root stays small."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "mlp_sweep"

# Lower layers first: a module may import from its own layer and the ones before it.
LAYERS = [
    {"config", "errors", "status", "paths", "hydra_compat", "labels"},
    {"training"},
    {"loggers"},
    {"run"},
    {"search"},
    {"launch"},
    {"results"},
    {"cli"},
    {"report", "bench", "__main__", "summary", "visdom_server", "__init__"},
]
LAYER_OF = {name: i for i, names in enumerate(LAYERS) for name in names}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imports(path: Path, name: str) -> list[tuple[str, list[str]]]:
    """(module imported, names taken from it) for every import in the file, lazy ones too."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [(a.name, []) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            found.append((base, [a.name for a in node.names]))
    return [(m, names) for m, names in found if m == "mlp_sweep" or m.startswith("mlp_sweep.")]


def edges() -> dict[str, set[str]]:
    """Module -> the project modules it imports (`from pkg import mod` counts as pkg.mod)."""
    known = modules()
    graph: dict[str, set[str]] = {}
    for name, path in known.items():
        targets = set()
        for mod, names in imports(path, name):
            subs = [f"{mod}.{n}" for n in names if f"{mod}.{n}" in known]
            targets |= set(subs) or {mod}
        graph[name] = targets - {name}
    return graph


def top(name: str) -> str:
    parts = name.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def test_no_import_circles() -> None:
    graph = edges()
    cycles = []
    state: dict[str, int] = {}

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if nxt not in graph:
                continue
            if state.get(nxt) == 1:
                cycles.append(" -> ".join([*stack[stack.index(nxt) :], nxt]))
            elif nxt not in state:
                visit(nxt, [*stack, nxt])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    assert cycles == []


def test_imports_flow_down_the_layers() -> None:
    upward = []
    for name, targets in edges().items():
        for target in targets:
            if LAYER_OF[top(target)] > LAYER_OF[top(name)]:
                upward.append(f"{name} imports {target}")
    assert sorted(upward) == []


def test_no_private_names_across_subpackages() -> None:
    crossing = []
    for name, path in modules().items():
        for mod, names in imports(path, name):
            if top(mod) == top(name):
                continue
            private = [n for n in names if n.startswith("_")]
            if private or any(part.startswith("_") for part in mod.split(".")[1:]):
                crossing.append(f"{name}: from {mod} import {', '.join(names)}")
    assert crossing == []


def test_the_root_holds_only_the_face_and_entry() -> None:
    root = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert len(root) <= 10, root


@pytest.mark.parametrize("plugin", sorted(p.name for p in (ROOT / "hydra_plugins").iterdir()))
def test_plugins_use_only_public_names(plugin: str) -> None:
    crossing = []
    for path in sorted((ROOT / "hydra_plugins" / plugin).glob("*.py")):
        for mod, names in imports(path, f"hydra_plugins.{plugin}.{path.stem}"):
            crossing += [f"{path.name}: {mod}.{n}" for n in names if n.startswith("_")]
    assert crossing == []


def test_every_subpackage_is_listed_for_the_wheel() -> None:
    """pyproject lists its packages by name (a package-dir mapping rules out packages.find):
    one left out is missing from the wheel, and only the wheel test would notice."""
    import tomllib

    listed = set(
        tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    )
    found = {
        module_name(init)
        for init in PACKAGE.rglob("__init__.py")
        if "__pycache__" not in init.parts
    }
    assert found <= listed, sorted(found - listed)
