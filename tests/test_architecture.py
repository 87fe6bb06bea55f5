"""The import contract of convlens, checked from the source (docs/ARCHITECTURE.md).

* no import cycle between convlens modules, counting imports inside functions (a function-level
  import that dodges a cycle is still a cycle); only ``if TYPE_CHECKING:`` blocks are left out;
* no private name imported across packages: ``convlens.x._y`` is imported only inside
  ``convlens.x``, and ``from convlens.x import _z`` only inside ``convlens.x``;
* the heavy dependencies appear in the torch-free core only inside functions;
* ``lint-imports`` (the layers and forbidden contracts in pyproject.toml) exits 0.

The detectors are tested on small synthetic packages first, so they cannot pass by finding
nothing.
"""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"
HEAVY = ("torch", "sympy", "matplotlib", "torchvision", "safetensors")
TORCH_FREE = ("convlens.index", "convlens.arithmetic")


@dataclass(frozen=True)
class Import:
    importer: str  # the module whose source holds the statement
    imported: str  # the module it loads (a submodule when ``from pkg import submodule``)
    name: str | None  # the name taken by ``from X import name``; None for ``import X``
    line: int
    in_function: bool

    def __str__(self) -> str:
        what = (
            f"from {self.imported} import {self.name}" if self.name else f"import {self.imported}"
        )
        where = " (inside a function)" if self.in_function else ""
        return f"{self.importer}:{self.line}: {what}{where}"


def discover(src: Path, package: str) -> dict[str, Path]:
    """Every module of ``package`` under ``src``, by dotted name (packages by their __init__)."""
    modules = {}
    for path in sorted((src / package).rglob("*.py")):
        parts = list(path.relative_to(src).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path
    return modules


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _statements(tree: ast.AST, in_function: bool = False) -> Iterator[tuple[ast.stmt, bool]]:
    """Import statements anywhere in ``tree`` (skipping ``if TYPE_CHECKING:`` bodies)."""
    for child in ast.iter_child_nodes(tree):
        if isinstance(child, ast.If) and _is_type_checking(child):
            for other in child.orelse:
                yield from _statements(other, in_function)
            continue
        if isinstance(child, (ast.Import, ast.ImportFrom)):
            yield child, in_function
        inner = in_function or isinstance(
            child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)
        )
        yield from _statements(child, inner)


def imports(src: Path, package: str) -> list[Import]:
    """All imports of ``package`` modules by ``package`` modules, statically from the source."""
    modules = discover(src, package)
    found = []
    for module, path in modules.items():
        is_package = path.name == "__init__.py"
        for node, in_function in _statements(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.split(".")[0] == package:
                        found.append(Import(module, alias.name, None, node.lineno, in_function))
                continue
            assert isinstance(node, ast.ImportFrom)
            if node.level:  # relative: resolve against the importer's package
                base = module.split(".") if is_package else module.split(".")[:-1]
                base = base[: len(base) - node.level + 1]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            if target.split(".")[0] != package:
                continue
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                imported = sub if sub in modules else target
                found.append(Import(module, imported, alias.name, node.lineno, in_function))
    return found


def find_cycles(edges: list[Import]) -> list[list[str]]:
    """One cycle (as a module path that returns to its start) per strongly connected component."""
    graph: dict[str, set[str]] = {}
    for edge in edges:
        if edge.imported != edge.importer:
            graph.setdefault(edge.importer, set()).add(edge.imported)
    # Tarjan's strongly connected components, iteratively.
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[set[str]] = []
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph.get(start, ()))))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = set()
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.add(member)
                    if member == node:
                        break
                if len(component) > 1:
                    components.append(component)
    cycles = []
    for component in components:
        # a shortest way back to the smallest member, by breadth-first search inside the component
        first = min(component)
        parents: dict[str, str] = {}
        frontier = [first]
        while frontier and first not in parents:
            following = []
            for node in frontier:
                for child in sorted(graph.get(node, ()) & component):
                    if child not in parents:
                        parents[child] = node
                        following.append(child)
            frontier = following
        path = [first]
        while parents[path[-1]] != first:
            path.append(parents[path[-1]])
        cycles.append([first, *reversed(path[1:]), first])
    return sorted(cycles)


def _owner(module: str, modules: dict[str, Path]) -> str:
    """The package a module belongs to: itself if it is a package, else its parent."""
    path = modules.get(module)
    if path is not None and path.name == "__init__.py":
        return module
    return module.rpartition(".")[0]


def _private(part: str) -> bool:
    return part.startswith("_") and not (part.startswith("__") and part.endswith("__"))


def private_crossings(src: Path, package: str) -> list[Import]:
    """Imports of a private module or a private name from outside the package that owns it."""
    modules = discover(src, package)
    bad = []
    for edge in imports(src, package):
        parts = edge.imported.split(".")
        owner = None
        for i, part in enumerate(parts):
            if _private(part):  # convlens.x._y (and anything below it) belongs to convlens.x
                owner = ".".join(parts[:i])
                break
        if owner is None and edge.name is not None and _private(edge.name):
            owner = _owner(edge.imported, modules)
        if owner is not None and not (
            edge.importer == owner or edge.importer.startswith(f"{owner}.")
        ):
            bad.append(edge)
    return bad


def heavy_module_level(src: Path, modules: tuple[str, ...]) -> list[str]:
    """Module-level imports of a heavy dependency in the given (torch-free) packages."""
    bad = []
    for module, path in discover(src, "convlens").items():
        if not any(module == m or module.startswith(f"{m}.") for m in modules):
            continue
        for node, in_function in _statements(ast.parse(path.read_text(), str(path))):
            names = (
                [alias.name for alias in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom) and not node.level
                else []
            )
            for name in names:
                if name.split(".")[0] in HEAVY and not in_function:
                    bad.append(f"{module}:{node.lineno}: {name}")
    return bad


# --- the detectors, on synthetic packages ---------------------------------------------------------


def _write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    return root


def test_cycle_detector_finds_a_cycle_hidden_in_a_function(tmp_path: Path) -> None:
    src = _write(
        tmp_path,
        {
            "pkg/__init__.py": "",
            "pkg/a.py": "def f():\n    from pkg.b import g\n    return g\n",
            "pkg/b.py": "import pkg.a\n\ndef g():\n    return pkg.a\n",
            "pkg/sub/__init__.py": "from . import c\n",
            "pkg/sub/c.py": "from ..a import f\n",  # relative, into the cycle but not back out
        },
    )
    assert find_cycles(imports(src, "pkg")) == [["pkg.a", "pkg.b", "pkg.a"]]


def test_cycle_detector_finds_a_long_cycle_through_relative_imports(tmp_path: Path) -> None:
    src = _write(
        tmp_path,
        {
            "pkg/__init__.py": "",
            "pkg/x/__init__.py": "from .one import ONE\n",
            "pkg/x/one.py": "from pkg.y import two\nONE = 1\n",
            "pkg/y/__init__.py": "",
            "pkg/y/two.py": "from .. import x\n",
        },
    )
    assert find_cycles(imports(src, "pkg")) == [["pkg.x", "pkg.x.one", "pkg.y.two", "pkg.x"]]


def test_cycle_detector_ignores_type_checking_imports(tmp_path: Path) -> None:
    src = _write(
        tmp_path,
        {
            "pkg/__init__.py": "",
            "pkg/a.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg.b import B\n",
            "pkg/b.py": "import pkg.a\nclass B: ...\n",
        },
    )
    assert len(imports(src, "pkg")) == 1
    assert find_cycles(imports(src, "pkg")) == []


def test_private_detector(tmp_path: Path) -> None:
    src = _write(
        tmp_path,
        {
            "pkg/__init__.py": "",
            "pkg/_util.py": "",  # private to pkg: every module of pkg may use it
            "pkg/a/__init__.py": "from pkg.a._impl import _helper, public\n",
            "pkg/a/_impl.py": "def _helper(): ...\ndef public(): ...\n",
            "pkg/a/inner.py": "from ._impl import _helper\nfrom pkg import _util\n",
            "pkg/b.py": (
                "from pkg.a._impl import public\n"  # private module, other package
                "from pkg.a import _helper\n"  # private name, other package
                "import pkg._util\n"
                "def f():\n    from pkg.a.inner import _helper\n"  # private name, in a function
            ),
        },
    )
    found = sorted((e.importer, e.line) for e in private_crossings(src, "pkg"))
    assert found == [("pkg.b", 1), ("pkg.b", 2), ("pkg.b", 5)]


def test_heavy_detector(tmp_path: Path) -> None:
    src = _write(
        tmp_path,
        {
            "convlens/__init__.py": "",
            "convlens/core.py": "import numpy\nimport torch.nn\ndef f():\n    import sympy\n",
            "convlens/other.py": "import torch\n",
        },
    )
    assert heavy_module_level(src, ("convlens.core",)) == ["convlens.core:2: torch.nn"]


# --- convlens itself ------------------------------------------------------------------------------


def test_no_import_cycles() -> None:
    cycles = find_cycles(imports(SRC, "convlens"))
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_no_private_names_across_packages() -> None:
    bad = private_crossings(SRC, "convlens")
    assert not bad, "private names imported across packages:\n" + "\n".join(map(str, bad))


def test_torch_free_core_imports_heavy_dependencies_only_inside_functions() -> None:
    bad = heavy_module_level(SRC, TORCH_FREE)
    assert not bad, "module-level heavy imports in the torch-free core:\n" + "\n".join(bad)


def _lint_imports() -> str:
    found = Path(sys.executable).with_name("lint-imports")
    if found.exists():
        return str(found)
    which = shutil.which("lint-imports")
    if which is None:
        pytest.fail("lint-imports not installed: pip install -e '.[test]'")
    return which


def test_import_linter_contracts_hold() -> None:
    proc = subprocess.run(
        [_lint_imports(), "--no-cache"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-2000:]
    assert "0 broken" in proc.stdout
