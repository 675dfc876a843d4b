"""The import graph of every installed mesc module (the four mapped folders exporters/, engines/,
calibration/, benchmarks/ included), read with ``ast`` without importing anything: imports
inside functions count, because they run too.

It fails on an import cycle between modules, on an import from a higher layer, on a module
that no layer holds, on an import of a mesc module that does not exist, and on a module
reading another module's underscore names. LAYERS is the one table of layers; docs/design.md
"Layout" describes it.
"""

from __future__ import annotations

import ast
import collections
import configparser
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# Bottom to top: a module may import its own layer and the layers below it, never above.
# An entry holds that module and everything under it; "mesc" alone is the top-level package's
# __init__ (the public facade: mesc.load, mesc.open_package), not everything in mesc/.
LAYERS = (
    ("base", ("mesc.errors", "mesc.lazy", "mesc.progress", "mesc.timestamps", "mesc.targets", "mesc.ranges")),
    ("policy and metrics", ("mesc.policy", "mesc.evaluation.metrics", "mesc.evaluation.scoring")),
    ("package format", ("mesc.package",)),
    ("datasets and runtime", ("mesc.datasets", "mesc.runtime")),
    ("public facade", ("mesc",)),
    ("models", ("mesc.models",)),
    ("stages", ("mesc.exporters", "mesc.calibration", "mesc.engines", "mesc.benchmarks", "mesc.training",
                "mesc.selftest", "mesc.serving", "mesc.evaluation")),
    ("cli", ("mesc.cli",)),
)


def _layer_index() -> dict:
    return {entry: (i, name) for i, (name, entries) in enumerate(LAYERS) for entry in entries}


def layer_of(module: str, index: dict | None = None):
    """(position, name) of the layer that holds ``module``; None where none does."""
    index = index or _layer_index()
    parts = module.split(".")
    for n in range(len(parts), 0, -1):
        key = ".".join(parts[:n])
        if key in index and (key != "mesc" or module == "mesc"):
            return index[key]
    return None


# Modules and their imports -----------------------------------------------------------------

def installed_modules(root: Path = ROOT) -> dict:
    """{module name: file} for every module setup.cfg's package_dir installs."""
    cfg = configparser.ConfigParser()
    cfg.read(root / "setup.cfg")
    mapping = [line.split("=") for line in cfg["options"]["package_dir"].strip().splitlines()]
    out = {}
    for package, folder in ((p.strip(), f.strip()) for p, f in mapping):
        for path in sorted((root / folder).rglob("*.py")):
            parts = list(path.relative_to(root / folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            name = ".".join([package, *parts])
            # a mapped folder (mesc.exporters -> exporters/) wins over a same-named one under mesc/
            out.setdefault(name, path)
    return out


def _package_of(module: str, path: Path) -> str:
    return module if path.name == "__init__.py" else module.rpartition(".")[0]


def _absolute(module: str, path: Path, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    base = _package_of(module, path).split(".")
    base = base[: len(base) - node.level + 1]
    return ".".join(base + ([node.module] if node.module else []))


def imports_of(module: str, path: Path, modules) -> list:
    """[(imported mesc module, line, names read)] for every import in the file, at any depth."""
    tree = ast.parse(path.read_text(), str(path))
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(a.name, node.lineno, ()) for a in node.names if a.name.split(".")[0] == "mesc"]
        elif isinstance(node, ast.ImportFrom):
            source = _absolute(module, path, node)
            if source.split(".")[0] != "mesc":
                continue
            for a in node.names:
                sub = f"{source}.{a.name}"
                out.append((sub, node.lineno, ()) if sub in modules else (source, node.lineno, (a.name,)))
    return out


def import_graph(modules: dict) -> dict:
    """{module: [(imported module, line, names)]} among ``modules``."""
    return {m: imports_of(m, p, modules) for m, p in modules.items()}


# Checks ----------------------------------------------------------------------------------------

def _rel(path: Path) -> str:
    """The file's path in its tree (the folder with the setup.cfg it was found through)."""
    root = next(p for p in path.parents if (p / "setup.cfg").exists())
    return path.relative_to(root).as_posix()


def _where(modules, module, line) -> str:
    return f"{_rel(modules[module])}:{line}"


def cycles(graph: dict) -> list:
    """One chain [a, b, ..., a] per strongly connected group of modules (Tarjan)."""
    edges = {m: sorted({t for t, _, _ in imps if t in graph and t != m}) for m, imps in graph.items()}
    index, low, stack, on, groups, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                groups.append(set(group))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    chains = []
    for group in sorted(groups, key=min):
        # the shortest way from the group's first module back to itself (breadth first)
        start, prev, queue, last = min(group), {}, collections.deque([min(group)]), None
        while last is None:
            v = queue.popleft()
            for w in edges[v]:
                if w == start:
                    last = v
                    break
                if w in group and w not in prev:
                    prev[w] = v
                    queue.append(w)
        chain = [last]
        while chain[-1] != start:
            chain.append(prev[chain[-1]])
        chains.append(chain[::-1] + [start])
    return chains


def describe_chain(graph, modules, chain) -> str:
    steps = []
    for a, b in zip(chain, chain[1:]):
        line = next(ln for t, ln, _ in graph[a] if t == b)
        steps.append(f"{a} ({_where(modules, a, line)})")
    return " -> ".join(steps + [chain[-1]])


def layer_violations(graph, modules) -> list:
    index, out = _layer_index(), []
    for m, imps in sorted(graph.items()):
        mine = layer_of(m, index)
        if mine is None:
            out.append(f"{m} ({_rel(modules[m])}) is in no layer: add it to LAYERS in tests/test_layers.py")
            continue
        for t, line, _ in imps:
            if t not in modules:
                out.append(f"{m} imports {t}, which is not an installed module ({_where(modules, m, line)})")
                continue
            theirs = layer_of(t, index)
            if theirs is not None and theirs[0] > mine[0]:
                out.append(f"{m} (layer {mine[0]}, {mine[1]}) imports {t} (layer {theirs[0]}, {theirs[1]}) "
                           f"at {_where(modules, m, line)}")
    return list(dict.fromkeys(out))  # one line per import statement, not per name


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def private_reads(modules) -> list:
    """Reads of another module's underscore names: ``from m import _x`` and ``m._x``."""
    out = []
    for m, path in sorted(modules.items()):
        tree = ast.parse(path.read_text(), str(path))
        bound = {}  # local name -> mesc module it is bound to
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for a in node.names:
                    if a.name.split(".")[0] == "mesc":
                        bound[a.asname or a.name.split(".")[0]] = a.name if a.asname else "mesc"
            elif isinstance(node, ast.ImportFrom):
                source = _absolute(m, path, node)
                if source.split(".")[0] != "mesc":
                    continue
                for a in node.names:
                    if f"{source}.{a.name}" in modules:
                        bound[a.asname or a.name] = f"{source}.{a.name}"
                    elif _private(a.name) and source != m:
                        out.append(f"{m} imports {source}.{a.name} ({_where(modules, m, node.lineno)})")
        for node in ast.walk(tree):
            if not isinstance(node, ast.Attribute) or not isinstance(node.ctx, ast.Load):
                continue
            names, v = [], node
            while isinstance(v, ast.Attribute):
                names.append(v.attr)
                v = v.value
            if not isinstance(v, ast.Name) or v.id not in bound:
                continue
            dotted = [bound[v.id], *names[::-1]]
            # walk down through module names; the first attribute past the last module is the read
            target, k = dotted[0], 1
            while k < len(dotted) and f"{target}.{dotted[k]}" in modules:
                target, k = f"{target}.{dotted[k]}", k + 1
            if k < len(dotted) and _private(dotted[k]) and target != m:
                out.append(f"{m} reads {target}.{dotted[k]} ({_where(modules, m, node.lineno)})")
    return sorted(set(out))


# Tests -------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def modules():
    return installed_modules()


@pytest.fixture(scope="module")
def graph(modules):
    return import_graph(modules)


def test_no_import_cycles(graph, modules):
    found = [describe_chain(graph, modules, c) for c in cycles(graph)]
    assert not found, "import cycles (imports inside functions count):\n  " + "\n  ".join(found)


def test_no_import_from_a_higher_layer(graph, modules):
    found = layer_violations(graph, modules)
    assert not found, "layer violations (see LAYERS in tests/test_layers.py):\n  " + "\n  ".join(found)


def test_no_module_reads_another_modules_private_names(modules):
    found = private_reads(modules)
    assert not found, "underscore names read across modules (make them public and named):\n  " + "\n  ".join(found)


def test_the_walk_sees_every_mapped_folder_and_nested_imports(modules, graph):
    for package in ("mesc.exporters", "mesc.engines", "mesc.calibration", "mesc.benchmarks", "mesc.runtime"):
        assert package in modules
    # an import inside a function is an edge like any other (engines.build -> the TRT compat)
    assert any(t == "mesc.runtime.backends.trt.compat" for t, _, _ in graph["mesc.engines.build"])


def _plant(tmp_path, files: dict) -> dict:
    """A tiny installed tree (setup.cfg package_dir + files) to check the checks themselves."""
    (tmp_path / "setup.cfg").write_text("[options]\npackage_dir =\n    mesc = mesc\n    mesc.engines = engines\n")
    for rel, text in {"mesc/__init__.py": "", "engines/__init__.py": "", **files}.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    return installed_modules(tmp_path)


def test_a_planted_cycle_is_caught_with_its_chain(tmp_path):
    mods = _plant(tmp_path, {
        "mesc/runtime/__init__.py": "",
        "mesc/runtime/a.py": "from mesc.runtime import b\n",
        "mesc/runtime/b.py": "def f():\n    from mesc.runtime.c import g\n",
        "mesc/runtime/c.py": "import mesc.runtime.a\n",
    })
    g = import_graph(mods)
    assert cycles(g) == [["mesc.runtime.a", "mesc.runtime.b", "mesc.runtime.c", "mesc.runtime.a"]]


def test_a_planted_upward_import_is_caught(tmp_path):
    mods = _plant(tmp_path, {
        "mesc/targets.py": "",
        "mesc/runtime/__init__.py": "",
        "mesc/runtime/compat.py": "def f():\n    from mesc.engines.targets import plan_build\n",
        "engines/targets.py": "from mesc.targets import parse_version\n",
        "mesc/stray.py": "",
    })
    found = layer_violations(import_graph(mods), mods)
    assert any("mesc.runtime.compat (layer 3, datasets and runtime) imports mesc.engines.targets (layer 6, stages)"
               in f for f in found)
    assert any(f.startswith("mesc.stray ") and "no layer" in f for f in found)
    assert not any(f.startswith("mesc.engines.targets") for f in found)  # downward is fine


def test_planted_private_reads_are_caught(tmp_path):
    mods = _plant(tmp_path, {
        "mesc/runtime/__init__.py": "def _tensorrt_installed():\n    pass\n",
        "mesc/cli/__init__.py": "import mesc.runtime\nfrom mesc.runtime import _tensorrt_installed\n"
                                "x = mesc.runtime._tensorrt_installed\n",
        "mesc/selftest.py": "from mesc import runtime as rt\ny = rt._tensorrt_installed()\nz = rt.__name__\n",
    })
    assert private_reads(mods) == [
        "mesc.cli imports mesc.runtime._tensorrt_installed (mesc/cli/__init__.py:2)",
        "mesc.cli reads mesc.runtime._tensorrt_installed (mesc/cli/__init__.py:3)",
        "mesc.selftest reads mesc.runtime._tensorrt_installed (mesc/selftest.py:2)",
    ]
