"""Imports only point down the layers drawn in docs/architecture.md.

Every module under ``finegrain/`` is parsed with ``ast`` (nothing is imported), mapped to its
layer, and each ``finegrain`` import it makes is checked: a module may import from its own layer
or below, never above. Rules (docs/architecture.md says why):

* imports inside functions count too — a lazy import is still a dependency — except in the
  ``interface`` layer (the CLI imports heavy libraries lazily so ``--help`` is fast) and in the
  root package ``finegrain/__init__.py``, a façade whose functions may call any layer;
* imports under ``if TYPE_CHECKING:`` count like any other: an annotation naming a class of a
  higher layer is the same knowledge of that layer;
* ``finegrain`` itself (the root: ``__version__``) is in the bottom layer for whoever imports it,
  so its module level may import nothing of ``finegrain``;
* an import of a ``finegrain`` module that no layer holds is a failure, not a pass: map it first;
* no import circle: the imports of the whole package form no cycle, module-level ones and lazy
  ones alike (a lazy import back is still a circle, only one that fails later and more rarely),
  except the lazy imports the interface layer and the root may make of anything, and those under
  ``if TYPE_CHECKING:``, which never run.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "finegrain"

#: bottom first; a module belongs to the layer of its longest matching prefix.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("core", ("finegrain", "finegrain.errors", "finegrain.config_fields", "finegrain.config", "finegrain.method_config",
              "finegrain.environment")),
    ("blocks", ("finegrain.data", "finegrain.models", "finegrain.losses")),
    ("runtime", ("finegrain.engine", "finegrain.inference")),
    ("datafree", ("finegrain.datafree",)),
    ("methods", ("finegrain.methods",)),
    ("loop", ("finegrain.engine.loop",)),
    ("tools", ("finegrain.viz", "finegrain.export", "finegrain.importing")),
    ("interface", ("finegrain.cli", "finegrain.commands", "finegrain.__main__", "finegrain.api")),
]
RANK = {name: i for i, (name, _) in enumerate(LAYERS)}
#: layers whose function bodies may import from any layer.
LAZY_ANYTHING = {"interface"}

#: (importing module, imported module) pairs that wait for another branch of issue 14; an entry
#: that no longer occurs fails the test, so it is removed once the fix has landed.
PENDING: set[tuple[str, str]] = set()


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def layer_of(module: str) -> str | None:
    if module == "finegrain":
        return "core"
    best, best_len = None, -1
    for layer, prefixes in LAYERS:
        for prefix in prefixes:
            if prefix != "finegrain" and (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best_len:
                best, best_len = layer, len(prefix)
    return best


def resolve(importer: str, node: ast.ImportFrom) -> str:
    """The absolute module of ``from X import ...`` (relative imports resolved against ``importer``)."""
    if not node.level:
        return node.module or ""
    is_package = MODULES.get(importer, Path()).name == "__init__.py"
    base = importer.split(".")
    base = base if is_package else base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def imported_modules(importer: str, node: ast.AST) -> list[str]:
    """The finegrain modules an import statement loads (``from P import sub`` loads ``P.sub``)."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names if alias.name.split(".")[0] == "finegrain"]
    source = resolve(importer, node)
    if source.split(".")[0] != "finegrain":
        return []
    found = []
    for alias in node.names:
        candidate = f"{source}.{alias.name}"
        target = candidate if candidate in MODULES else source
        if target not in found:
            found.append(target)
    return found


def package_of(module: str) -> str:
    """``finegrain.data.loaders`` -> ``finegrain.data``; a top-level module is its own package."""
    parts = module.split(".")
    return ".".join(parts[:2])


def private_names(importer: str, tree: ast.Module) -> list[tuple[str, str, int]]:
    """(source module, name, line) of ``_private`` names imported from another package."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and resolve(importer, node).split(".")[0] == "finegrain":
            source = resolve(importer, node)
            if package_of(source) != package_of(importer):
                found += [(source, a.name, node.lineno) for a in node.names
                          if a.name.startswith("_") and not a.name.startswith("__")]
    return found


def imports_of(importer: str, tree: ast.Module):
    """(imported module, line, inside a function) for every finegrain import of a module."""

    def walk(node, in_function):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                for target in imported_modules(importer, child):
                    yield target, child.lineno, in_function
            inner = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            yield from walk(child, inner)

    yield from walk(tree, False)


def violations() -> tuple[list[str], set[tuple[str, str]]]:
    problems, pending_seen = [], set()
    for module, path in MODULES.items():
        own = layer_of(module)
        if own is None:
            continue  # test_every_module_has_a_layer names it
        for target, line, in_function in imports_of(module, ast.parse(path.read_text(), str(path))):
            if in_function and (own in LAZY_ANYTHING or module == "finegrain"):
                continue
            if module == "finegrain" and not in_function:
                problems.append(f"{path.relative_to(PACKAGE.parent)}:{line}: the root package imports {target} "
                                f"at module level (every import of finegrain would load it)")
                continue
            theirs = layer_of(target)
            if theirs is None:
                problems.append(f"{path.relative_to(PACKAGE.parent)}:{line}: {module} imports {target}, which no "
                                f"layer holds (add it to LAYERS here and to docs/architecture.md)")
                continue
            if RANK[theirs] <= RANK[own]:
                continue
            if (module, target) in PENDING:
                pending_seen.add((module, target))
                continue
            problems.append(f"{path.relative_to(PACKAGE.parent)}:{line}: {module} (layer {own}) imports "
                            f"{target} (layer {theirs}, above)")
    return problems, pending_seen


def runtime_imports(importer: str, tree: ast.Module):
    """(imported module, line, inside a function) for each finegrain import of ``importer`` that can
    run: not those under ``if TYPE_CHECKING:``.

    Importing ``finegrain.a.b`` first runs ``finegrain/a/__init__.py``, so a package above the target
    counts too, unless the importer is inside it (then it is already being imported)."""

    def type_checking(test: ast.expr) -> bool:
        return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
            isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")

    def walk(nodes, in_function):
        for node in nodes:
            if isinstance(node, ast.If) and type_checking(node.test):
                yield from walk(node.orelse, in_function)
                continue
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                for target in imported_modules(importer, node):
                    parts = target.split(".")
                    for depth in range(2, len(parts)):
                        package = ".".join(parts[:depth])
                        if package in MODULES and not importer.startswith(package + "."):
                            yield package, node.lineno, in_function
                    yield target, node.lineno, in_function
                continue
            inner = in_function or isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            yield from walk(ast.iter_child_nodes(node), inner)

    yield from walk(tree.body, False)


def import_graph() -> dict[str, dict[str, int]]:
    """module -> {finegrain module it imports: line of the import} (see the module docstring's rules)."""
    graph = {}
    for module, path in MODULES.items():
        edges = graph.setdefault(module, {})
        free = module == "finegrain" or layer_of(module) in LAZY_ANYTHING
        for target, line, in_function in runtime_imports(module, ast.parse(path.read_text(), str(path))):
            if target in MODULES and target != module and not (in_function and free):
                edges.setdefault(target, line)
    return graph


def import_cycles() -> list[str]:
    """One cycle, written out with the line of each import, per strongly connected group of modules
    (Tarjan's algorithm over :func:`import_graph`)."""
    graph = import_graph()
    index, low, on_stack, stack, groups = {}, {}, set(), [], []

    def connect(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        on_stack.add(module)
        for target in graph[module]:
            if target not in index:
                connect(target)
                low[module] = min(low[module], low[target])
            elif target in on_stack:
                low[module] = min(low[module], index[target])
        if low[module] == index[module]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == module:
                    break
            if len(group) > 1:
                groups.append(set(group))

    for module in sorted(graph):
        if module not in index:
            connect(module)
    cycles = []
    for group in groups:
        start = min(group)
        paths = {start: [start]}  # breadth first inside the group, back to the start
        queue, cycle = [start], None
        while queue and cycle is None:
            module = queue.pop(0)
            for target in sorted(graph[module]):
                if target == start:
                    cycle = paths[module] + [start]
                    break
                if target in group and target not in paths:
                    paths[target] = paths[module] + [target]
                    queue.append(target)
        hops = [f"{a} ({MODULES[a].relative_to(PACKAGE.parent)}:{graph[a][b]})" for a, b in zip(cycle, cycle[1:])]
        cycles.append(" -> ".join(hops + [start]))
    return cycles


def test_no_module_reaches_into_another_packages_private_names():
    problems = [f"{path.relative_to(PACKAGE.parent)}:{line}: {module} imports {source}.{name} (private; make it public)"
                for module, path in MODULES.items()
                for source, name, line in private_names(module, ast.parse(path.read_text(), str(path)))]
    assert not problems, "\n".join(problems)


def test_every_module_has_a_layer():
    unmapped = [m for m in MODULES if layer_of(m) is None]
    assert not unmapped, f"modules without a layer (add them to LAYERS here and to docs/architecture.md): {unmapped}"


def test_no_import_circle():
    cycles = import_cycles()
    assert not cycles, "imports that go round in a circle:\n" + "\n".join(cycles)


def test_imports_point_down_the_layers():
    problems, pending_seen = violations()
    assert not problems, "imports from a higher layer:\n" + "\n".join(problems)
    stale = PENDING - pending_seen
    assert not stale, f"PENDING entries that no longer occur (remove them): {sorted(stale)}"


def _check(files: dict[str, str], tmp_path, monkeypatch) -> list[str]:
    """Run the checker over a fake package made of ``files`` (path -> source)."""
    root = tmp_path / "finegrain"
    for rel, source in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(source)
    monkeypatch.setitem(globals(), "PACKAGE", root)
    monkeypatch.setitem(globals(), "MODULES", {module_name(p): p for p in sorted(root.rglob("*.py"))})
    monkeypatch.setitem(globals(), "PENDING", set())
    return violations()[0]


@pytest.mark.parametrize("source, bad", [
    ("from finegrain.methods import csdnet\n", True),                               # module level, upward
    ("def f():\n    from finegrain.commands.evaluate import run\n", True),          # lazy, upward
    ("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from finegrain.viz import report\n", True),
    ("from finegrain.data.loaders import align_labels\n", False),                    # same layer
    ("from finegrain.errors import DataError\nimport finegrain\n", False),            # below
])
def test_the_checker_names_an_upward_import(source, bad, tmp_path, monkeypatch):
    files = {"__init__.py": "", "errors.py": "", "data/__init__.py": "", "data/loaders.py": "",
             "methods/__init__.py": "", "methods/csdnet.py": "", "commands/__init__.py": "",
             "commands/evaluate.py": "", "viz/__init__.py": "", "viz/report.py": "",
             "models/__init__.py": "", "models/ssdp.py": source}
    problems = _check(files, tmp_path, monkeypatch)
    assert bool(problems) == bad
    if bad:
        assert "finegrain/models/ssdp.py" in problems[0] and "finegrain.models.ssdp (layer blocks)" in problems[0]


def test_lazy_imports_are_free_in_the_interface_layer_only(tmp_path, monkeypatch):
    lazy = "def run():\n    from finegrain.engine.loop import fit\n"
    files = {"__init__.py": "", "engine/__init__.py": "", "engine/loop.py": "", "commands/__init__.py": "",
             "commands/train.py": lazy, "viz/__init__.py": "", "viz/report.py": "from finegrain.engine.loop import fit\n",
             "data/__init__.py": "", "data/views.py": lazy}
    problems = _check(files, tmp_path, monkeypatch)
    assert len(problems) == 1 and "finegrain.data.views (layer blocks) imports finegrain.engine.loop" in problems[0]


def test_the_checker_fails_an_import_no_layer_holds(tmp_path, monkeypatch):
    files = {"__init__.py": "", "nowhere.py": "", "data/__init__.py": "",
             "data/views.py": "from finegrain.nowhere import thing\n"}
    problems = _check(files, tmp_path, monkeypatch)
    assert len(problems) == 1 and "finegrain.data.views imports finegrain.nowhere, which no layer holds" in problems[0]


@pytest.mark.parametrize("back, circle", [
    ("from finegrain.config import Config\n", True),                                  # module level
    ("import dataclasses\nclass A:\n    from finegrain import config\n", True),      # in a class body
    ("def f():\n    from finegrain.config import Config\n", True),                   # lazy: still a circle
    ("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from finegrain.config import Config\n", False),
    ("from finegrain.errors import ConfigError\n", False),                            # no way back
])
def test_the_checker_names_an_import_circle(back, circle, tmp_path, monkeypatch):
    files = {"__init__.py": "", "errors.py": "", "config.py": "from finegrain import method_config\n",
             "method_config.py": back, "data/__init__.py": "from finegrain.data.views import crop\n",
             "data/views.py": "from finegrain.errors import DataError\n",
             "cli.py": "def main():\n    from finegrain.commands import train\n",          # the interface layer's
             "commands/__init__.py": "", "commands/train.py": "from finegrain import cli\n"}  # lazy imports are free
    _check(files, tmp_path, monkeypatch)
    cycles = import_cycles()
    assert bool(cycles) == circle
    if circle:
        assert cycles == ["finegrain.config (finegrain/config.py:1) -> finegrain.method_config "
                          f"(finegrain/method_config.py:{back.count(chr(10))}) -> finegrain.config"]


def test_a_package_above_the_imported_module_counts_in_a_circle(tmp_path, monkeypatch):
    """``from finegrain.data.views import x`` runs ``finegrain/data/__init__.py`` first."""
    files = {"__init__.py": "", "errors.py": "from finegrain.data.views import crop\n",
             "data/__init__.py": "from finegrain.errors import DataError\n", "data/views.py": ""}
    _check(files, tmp_path, monkeypatch)
    assert import_cycles() == ["finegrain.data (finegrain/data/__init__.py:1) -> finegrain.errors "
                               "(finegrain/errors.py:1) -> finegrain.data"]
