"""Every third-party module that mlp_sweep/ and hydra_plugins/ import is a declared dependency:
in pyproject.toml's core dependencies, or in the extra whose code imports it, or installed by
its own line of .ci/run (visdom), which the README gives users too.

Imports are read from the source (ast), lazy ones and TYPE_CHECKING ones too, so an extra left
out of this install hides nothing; import names become distributions through the installed
metadata, or KNOWN where the distribution is not installed here."""

from __future__ import annotations

import ast
import re
import shlex
import sys
import tomllib
from collections.abc import Iterator
from functools import cache
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SOURCES = ("mlp_sweep", "hydra_plugins")

# The code of each extra (a file, or a folder ending in "/"): it may import that extra's
# packages as well as the core's. Everything else is core code.
EXTRA_CODE = {
    "cluster": ("hydra_plugins/mlp_sweep_launchers/slurm_launcher.py",),
    "search": ("mlp_sweep/search/", "hydra_plugins/mlp_sweep_optuna/"),
    "viz": (
        "mlp_sweep/loggers/tensorboard.py",
        "mlp_sweep/loggers/visdom.py",
        "mlp_sweep/loggers/visdom_server.py",
    ),
    "track": (
        "mlp_sweep/loggers/mlflow_logger.py",
        "mlp_sweep/loggers/mlflow_store.py",
        "mlp_sweep/results/mlflow_parent.py",
    ),
}
# Import names whose distribution an install without every extra does not hold, so its
# metadata cannot tell; and hydra_plugins' subpackages, a namespace several distributions share.
KNOWN = {
    "PIL": "Pillow",
    "mlflow": "mlflow-skinny",  # the full mlflow holds it too; the client needs only this
    "optuna": "optuna",
    "requests": "requests",
    "submitit": "submitit",
    "tensorboard": "tensorboard",
    "visdom": "visdom",
    "hydra_plugins.hydra_submitit_launcher": "hydra-submitit-launcher",
}
NAMESPACES = {"hydra_plugins"}
# Modules whose import needs a distribution the import does not name.
IMPLIED = {
    "torch.utils.tensorboard": "tensorboard",
    "mlflow.store.tracking.sqlalchemy_store": "sqlalchemy",  # the local store's database
}
# Checkout files that the package puts on sys.path itself (the SLURM benchmark's cluster).
CHECKOUT_MODULES = {"slurm_cluster": "tests/cluster/slurm_cluster.py"}
# pip install's options whose next word is their value, not a requirement.
TAKES_VALUE = {"-e", "--editable", "-r", "--requirement", "-c", "--constraint"}


def normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()  # PEP 503


def requirement_name(requirement: str) -> str:
    match = re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", requirement.strip())
    assert match, f"not a requirement: {requirement!r}"
    return normalized(match.group())


@cache
def pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def own_packages() -> set[str]:
    return {name.split(".")[0] for name in pyproject()["tool"]["setuptools"]["packages"]}


def own_subpackages(namespace: str) -> set[str]:
    return {p.name for p in (ROOT / namespace).iterdir() if (p / "__init__.py").is_file()}


def separate_installs(path: Path) -> list[str]:
    """The requirements a shell script's `pip install` lines name, the project itself left out
    (a path, an option and its value)."""
    found = []
    for line in path.read_text().splitlines():
        words = shlex.split(line, comments=True)
        if "pip" not in words or "install" not in words:
            continue
        words = words[words.index("install") + 1 :]
        for before, word in zip(["", *words], words, strict=False):
            if before not in TAKES_VALUE and not word.startswith(("-", ".", "/")):
                found.append(word)
    return found


def extra_of(path: str) -> str | None:
    for extra, code in EXTRA_CODE.items():
        if any(path == c or (c.endswith("/") and path.startswith(c)) for c in code):
            return extra
    return None


def imported(tree: ast.AST) -> Iterator[tuple[int, str]]:
    """(line, dotted module) for each absolute import in the tree."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from ((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.lineno, node.module
            # `from torch.utils import tensorboard` imports a submodule IMPLIED may name.
            yield from ((node.lineno, f"{node.module}.{alias.name}") for alias in node.names)


def needed(module: str) -> str | None:
    """The import key of a third-party module (its top-level name, or namespace.sub), or None
    for the standard library and the project's own code."""
    parts = module.split(".")
    top = parts[0]
    if top in sys.stdlib_module_names or top in CHECKOUT_MODULES:
        return None
    if top in NAMESPACES:
        if len(parts) < 2 or parts[1] in own_subpackages(top):
            return None
        return f"{top}.{parts[1]}"
    return None if top in own_packages() else top


@cache
def distributions_of(key: str) -> frozenset[str]:
    """The installed distributions that provide an import key, else KNOWN's, else none."""
    if key in KNOWN:
        found: set[str] = {KNOWN[key]}
    elif "." in key:
        prefix = key.replace(".", "/") + "/"
        found = {
            d.metadata["Name"]
            for d in metadata.distributions()
            if any(str(f).startswith(prefix) for f in d.files or ())
        }
    else:
        found = set(metadata.packages_distributions().get(key, ()))
    return frozenset(normalized(name) for name in found)


def third_party(path: Path) -> dict[str, tuple[int, frozenset[str]]]:
    """What a file imports from outside the project and the standard library, each with its
    first line and the distributions that provide it."""
    found: dict[str, tuple[int, frozenset[str]]] = {}
    for line, module in imported(ast.parse(path.read_text(), str(path))):
        key = needed(module)
        if key is not None and key not in found:
            found[key] = line, distributions_of(key)
        if module in IMPLIED and module not in found:
            found[module] = line, frozenset({normalized(IMPLIED[module])})
    return found


def undeclared() -> list[str]:
    """One line per third-party import that no declaration allows where it is imported."""
    project = pyproject()["project"]
    core = {requirement_name(r) for r in project["dependencies"]}
    extras = {
        extra: {requirement_name(r) for r in reqs}
        for extra, reqs in project["optional-dependencies"].items()
    }
    beside = {requirement_name(r) for r in separate_installs(ROOT / ".ci" / "run")}
    problems = []
    for source in SOURCES:
        for path in sorted((ROOT / source).rglob("*.py")):
            where = path.relative_to(ROOT).as_posix()
            extra = extra_of(where)
            allowed = core | extras[extra] | beside if extra else core
            home = "[project] dependencies"
            if extra:
                home += f", its {extra} extra, or a pip install line of .ci/run"
            for key, (line, dists) in third_party(path).items():
                if not dists:
                    problems.append(
                        f"{where}:{line}: import {key}: no installed distribution provides it, "
                        "and tests/test_dependencies.py's KNOWN does not name one"
                    )
                elif not dists & allowed:
                    problems.append(
                        f"{where}:{line}: import {key} needs {' or '.join(sorted(dists))}, "
                        f"not in pyproject.toml's {home}"
                    )
    return problems


def test_every_third_party_import_is_declared_where_its_code_is() -> None:
    problems = undeclared()
    assert not problems, "\n".join(problems)


def test_the_extras_code_and_names_exist() -> None:
    """A renamed module or extra must not leave its imports unchecked (as core) or unmatched."""
    assert set(EXTRA_CODE) <= set(pyproject()["project"]["optional-dependencies"])
    missing = [c for code in EXTRA_CODE.values() for c in code if not (ROOT / c).exists()]
    missing += [p for p in CHECKOUT_MODULES.values() if not (ROOT / p).is_file()]
    assert missing == []


def test_what_ci_installs_beside_the_package_the_docs_give_users() -> None:
    """visdom is installed by a line of its own (a build constraint: README), which this file
    counts as declared for the extras' code; users must be given the same requirement."""
    beside = separate_installs(ROOT / ".ci" / "run")
    assert "visdom" in {requirement_name(r) for r in beside}  # loggers/visdom.py's
    for doc in ("README.md", "docs/development.md"):
        lines = [line for line in (ROOT / doc).read_text().splitlines() if "pip install" in line]
        assert [r for r in beside if not any(r in line for line in lines)] == [], doc
