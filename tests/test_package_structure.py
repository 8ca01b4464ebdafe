"""The package's structure: no import cycles, no private names across modules, no citations of
files outside the repository.

Modules are read with ``ast`` (never imported), found with ``pkgutil``. How imports count:

- Module-level imports (also inside ``try`` / ``if`` at module level and in class bodies) are
  edges: they run when the module is imported, so a cycle among them is a real import cycle.
- Imports under ``if TYPE_CHECKING:`` never run and are not edges.
- Imports inside functions run when the function is called. They cannot fail as a cycle, but a
  function-level import that closes a circle hides one (the old model registry: ``base`` imported
  the models inside a function, the models imported ``register_model`` from ``base``), so the
  package test counts them as edges too; ``import_graph`` can leave them out.
- ``from pkg import name`` is an edge to ``pkg.name`` when that is a module, else to ``pkg``.
  Importing ``a.b`` also runs ``a/__init__.py``; that parent edge is not added (every package
  ``__init__`` that imports its own submodules would otherwise be a "cycle").
"""

from __future__ import annotations

import ast
import pkgutil
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

import pathosam_wsi

ROOT = Path(__file__).resolve().parent.parent

# Known exceptions as (importer, module, name); empty since the cli package landed.
PRIVATE_IMPORT_ALLOWED: set[tuple[str, str, str]] = set()


@dataclass(frozen=True)
class Import:
    """One import statement's target as seen from ``module``."""

    module: str
    target: str
    """The imported module (resolved, absolute)."""
    names: tuple[str, ...]
    """Names taken from ``target`` (``from target import a, b``); empty for ``import target``."""
    aliases: tuple[str, ...]
    """The names they are bound to (``as`` names, else the names; ``import a.b as m``: m)."""
    level: str
    """``module`` (runs on import), ``function`` (runs when called) or ``type_checking``."""
    line: int


def discover(package_dir: Path, package: str) -> dict[str, tuple[Path, bool]]:
    """Every module of a package on disk -> (file, is_package), without importing any.

    ``pkgutil.iter_modules`` per folder (``walk_packages`` would import the sub-packages).
    """
    found = {package: (package_dir / "__init__.py", True)}
    for info in pkgutil.iter_modules([str(package_dir)]):
        name = f"{package}.{info.name}"
        if info.ispkg:
            found.update(discover(package_dir / info.name, name))
        else:
            found[name] = (package_dir / f"{info.name}.py", False)
    return found


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _resolve(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    """The absolute module of a (possibly relative) ``from ... import``."""
    if not node.level:
        return node.module or ""
    parts = module.split(".")
    base = parts if is_package else parts[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join([*base, node.module] if node.module else base)


def module_imports(module: str, source: str, is_package: bool) -> list[Import]:
    """The imports of one module's source, each with where it runs."""
    out: list[Import] = []

    def visit(node: ast.AST, level: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child.test):
                for sub in child.body:
                    visit_stmt(sub, "type_checking")
                for sub in child.orelse:
                    visit_stmt(sub, level)
                continue
            visit_stmt(child, level)

    def visit_stmt(node: ast.AST, level: str) -> None:
        if isinstance(node, ast.Import):
            out.extend(
                Import(module, a.name, (), (a.asname or "",), level, node.lineno)
                for a in node.names
            )
        elif isinstance(node, ast.ImportFrom):
            target = _resolve(module, is_package, node)
            names = tuple(a.name for a in node.names)
            aliases = tuple(a.asname or a.name for a in node.names)
            out.append(Import(module, target, names, aliases, level, node.lineno))
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            visit(node, "function")
        else:
            visit(node, level)

    visit(ast.parse(source), "module")
    return out


def import_graph(
    modules: dict[str, tuple[Path, bool]], levels: tuple[str, ...] = ("module", "function")
) -> dict[str, set[str]]:
    """Import edges among ``modules`` from imports at ``levels`` (see the module docstring)."""
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for name, (path, is_pkg) in modules.items():
        for imp in module_imports(name, path.read_text(), is_pkg):
            if imp.level not in levels:
                continue
            targets = [f"{imp.target}.{n}" for n in imp.names if f"{imp.target}.{n}" in modules]
            if len(targets) < len(imp.names) or not imp.names:
                targets.append(imp.target)
            graph[name].update(t for t in targets if t in modules and t != name)
    return graph


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []
    counter = [0]
    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10 * len(graph) + 100))

    def connect(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                connect(w)
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
                cycles.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            connect(v)
    return sorted(cycles)


def private_imports(modules: dict[str, tuple[Path, bool]]) -> list[tuple[str, str, str, int]]:
    """(importer, module, name, line) for every ``_name`` taken from another package module,
    by ``from m import _name`` or by ``alias._name`` on an imported package module."""
    found = []
    for name, (path, is_pkg) in modules.items():
        module_aliases: dict[str, str] = {}  # local name -> package module it stands for
        for imp in module_imports(name, path.read_text(), is_pkg):
            if imp.target not in modules or imp.target == name:
                continue
            if not imp.names:
                if imp.aliases[0]:  # import pkg.mod as alias
                    module_aliases[imp.aliases[0]] = imp.target
                continue
            for n, alias in zip(imp.names, imp.aliases, strict=True):
                if f"{imp.target}.{n}" in modules:
                    module_aliases[alias] = f"{imp.target}.{n}"
                elif n.startswith("_") and not n.startswith("__"):
                    found.append((name, imp.target, n, imp.line))
        found.extend(
            (name, module_aliases[node.value.id], node.attr, node.lineno)
            for node in ast.walk(ast.parse(path.read_text()))
            if isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id in module_aliases
            and node.attr.startswith("_")
            and not node.attr.startswith("__")
        )
    return sorted(set(found))


def _package() -> dict[str, tuple[Path, bool]]:
    return discover(Path(pathosam_wsi.__file__).parent, "pathosam_wsi")


# --- the package -----------------------------------------------------------------------------


def test_discovery_sees_every_module() -> None:
    modules = _package()
    files = {p.resolve() for p, _ in modules.values()}
    on_disk = {p.resolve() for p in (ROOT / "pathosam_wsi").rglob("*.py")}
    assert files == on_disk
    assert "pathosam_wsi.model.registry" in modules and "pathosam_wsi.pipeline.layout" in modules


def test_no_import_cycles() -> None:
    cycles = find_cycles(import_graph(_package()))
    assert cycles == [], f"import cycles (module- and function-level imports): {cycles}"


def test_model_registry_imports_no_model() -> None:
    modules = _package()
    graph = import_graph(modules)
    models = {m for m in modules if m.startswith("pathosam_wsi.model.")}
    allowed = {"pathosam_wsi.model.base"}  # the NucleusModel protocol the builders return
    assert graph["pathosam_wsi.model.registry"] & models <= allowed


def test_no_private_names_across_modules() -> None:
    found = private_imports(_package())
    unexpected = [f for f in found if f[:3] not in PRIVATE_IMPORT_ALLOWED]
    assert unexpected == [], f"private names imported across modules: {unexpected}"
    stale = PRIVATE_IMPORT_ALLOWED - {f[:3] for f in found}
    assert not stale, f"allow-list entries no longer needed, remove them: {sorted(stale)}"


# --- citations -------------------------------------------------------------------------------

CITING = ("pathosam_wsi", "docs", "benchmarks", "deploy", "tests")
"""Folders whose files may cite documents; plus the top-level files below."""
TOP_FILES = ("README.md", "CHANGELOG.md", "pyproject.toml")
SUFFIXES = {".py", ".md", ".toml", ".txt", ".sh", ".yml", ".yaml", ".cfg", ".lock"}
OUTSIDE = re.compile(r"\.\./shared|shared/spec|/work/")
"""Paths that only exist on the machine the project was written on."""
MD_CITATION = re.compile(r"(?<![\w/.-])((?:\.\./|\./)?(?:[\w-]+/)*[\w.-]+\.md)\b")
EXTERNAL_CITATIONS = {
    # A file of the micro-sam repository, named as such in the text (not a file of this repo).
    ("docs/pathosam-reference.md", "finetuning/evaluation/time-benchmarking.md"),
}


def _citing_files() -> Iterator[Path]:
    for top in TOP_FILES:
        if (ROOT / top).is_file():
            yield ROOT / top
    for folder in CITING:
        for path in sorted((ROOT / folder).rglob("*")):
            if path.is_file() and path.suffix in SUFFIXES and "results" not in path.parts:
                yield path


def citation_problems(path: Path, root: Path) -> list[str]:
    """Citations in ``path`` of files that are not in the repository at ``root``."""
    rel = path.relative_to(root).as_posix()
    if rel == "tests/test_package_structure.py":
        return []  # this file names the forbidden patterns
    problems = []
    for lineno, line in enumerate(path.read_text(errors="replace").splitlines(), start=1):
        if OUTSIDE.search(line):
            problems.append(f"{rel}:{lineno}: path outside the repository: {line.strip()}")
        for cited in MD_CITATION.findall(line):
            if (rel, cited) in EXTERNAL_CITATIONS:
                continue
            if not ((root / cited).is_file() or (path.parent / cited).is_file()):
                problems.append(f"{rel}:{lineno}: {cited!r} is not a file of the repository")
    return problems


def test_no_citation_of_files_outside_the_repo() -> None:
    problems = [p for path in _citing_files() for p in citation_problems(path, ROOT)]
    assert problems == [], "\n".join(problems)


# --- the checks themselves can fail ----------------------------------------------------------


def _write_package(root: Path, files: dict[str, str]) -> Path:
    pkg = root / "toypkg"
    for rel, text in files.items():
        path = pkg / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return pkg


def test_a_deliberate_cycle_is_found(tmp_path: Path) -> None:
    pkg = _write_package(
        tmp_path,
        {
            "__init__.py": "",
            "base.py": "from toypkg.model import thing\n",
            "model/__init__.py": "from toypkg.model import impl\n",
            "model/impl.py": "from . import reg\n",
            "model/reg.py": "from ..base import x\n",
            "leaf.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
            "    from toypkg import base\n",
            "lazy.py": "def f():\n    from toypkg import leaf\n",
            "other.py": "import toypkg.lazy\n",
        },
    )
    graph = import_graph(discover(pkg, "toypkg"))
    assert graph["toypkg.model.impl"] == {"toypkg.model.reg"}  # relative import resolved
    assert graph["toypkg.leaf"] == set()  # TYPE_CHECKING is no edge
    assert graph["toypkg.lazy"] == {"toypkg.leaf"}  # a function-level import is one by default
    assert import_graph(discover(pkg, "toypkg"), ("module",))["toypkg.lazy"] == set()
    assert find_cycles(graph) == [
        ["toypkg.base", "toypkg.model", "toypkg.model.impl", "toypkg.model.reg"]
    ]
    (pkg / "base.py").write_text("def f():\n    from toypkg.model import thing\n")
    modules = discover(pkg, "toypkg")
    assert len(find_cycles(import_graph(modules))) == 1  # hidden in a function: still a cycle
    assert find_cycles(import_graph(modules, ("module",))) == []


def test_private_imports_are_found(tmp_path: Path) -> None:
    pkg = _write_package(
        tmp_path,
        {
            "__init__.py": "",
            "a.py": "_hidden = 1\n__version__ = '1'\n",
            "_types.py": "XY = tuple\n",
            "b.py": "from toypkg.a import _hidden, __version__\nfrom toypkg import _types\n",
            "c.py": "from toypkg import a as mod\ndef f():\n    return mod._hidden\n",
            "d.py": "import toypkg.a as m\nimport toypkg.b\nm._hidden\n",
        },
    )
    assert private_imports(discover(pkg, "toypkg")) == [
        ("toypkg.b", "toypkg.a", "_hidden", 1),
        ("toypkg.c", "toypkg.a", "_hidden", 3),
        ("toypkg.d", "toypkg.a", "_hidden", 3),
    ]


@pytest.mark.parametrize(
    ("text", "bad"),
    [
        ("see docs/stack.md P14", False),
        ("see stack.md P14", True),
        ("(pathosam-reference.md §4.3)", True),
        ("copied from ../shared/spec/notes.txt", True),
        ("see README.md in this folder", False),
    ],
)
def test_citation_check(tmp_path: Path, text: str, bad: bool) -> None:
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "stack.md").write_text("x")
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "README.md").write_text("x")
    cite = tmp_path / "pkg" / "mod.py"
    cite.write_text(f'"""{text}"""\n')
    assert bool(citation_problems(cite, tmp_path)) == bad
