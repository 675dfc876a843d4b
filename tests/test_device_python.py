"""The device side stays Python 3.8 code (JetPack 5's Python on the Jetson AGX Xavier).

Device side: every module that does not need torch (export, training and the models do). The
Python 3.8 stage of `make test` runs the device-side tests on 3.8; the checks here also reach the
modules those tests do not import: each module parses as 3.8 and defers its annotations, no call
that 3.9 added appears (vermin, where installed, and the ones vermin cannot see because it does
not know a receiver's type), and on a Python without torch every device-side module imports.
Python 3.7 and older are turned away with one line naming the minimum.
"""

from __future__ import annotations

import ast
import importlib.util
import os
import shutil
import subprocess
import sys

import pytest
from source_tree import ROOT, module_files, syntax_trees

# the one module that must parse on the Pythons it turns away (no __future__ import there)
VERSION_GUARD = "mesc"
# method names only Python 3.9+ has on str/bytes/Path, whatever the receiver (vermin needs the type)
NEW_METHODS = {"removeprefix": "3.9", "removesuffix": "3.9", "is_relative_to": "3.9", "with_stem": "3.9", "bit_count": "3.10"}


MODULES = module_files()
TREES = syntax_trees()


def _top_level_imports(name: str, tree) -> set[str]:
    """Modules ``name`` imports when it is imported (not the imports inside functions)."""
    found = set()
    package = name if MODULES[name].name == "__init__.py" else name.rpartition(".")[0]
    for node in tree.body:
        nodes = [node]
        if isinstance(node, (ast.If, ast.Try)):
            nodes = [n for n in ast.walk(node) if isinstance(n, (ast.Import, ast.ImportFrom))]
        for n in nodes:
            if isinstance(n, ast.Import):
                found.update(a.name for a in n.names)
            elif isinstance(n, ast.ImportFrom):
                base = n.module or ""
                if n.level:
                    base = ".".join(package.split(".")[: len(package.split(".")) - n.level + 1] + ([base] if base else []))
                found.add(base)
                found.update(f"{base}.{a.name}" for a in n.names)
    return found


def _imports_torch_when_imported(name: str, tree) -> bool:
    """torch imported at module level (``import torch`` or ``require("torch")``); an import
    inside a function leaves the module importable without it."""
    if any(m.split(".")[0] == "torch" for m in _top_level_imports(name, tree)):
        return True
    top = [n for stmt in tree.body if not isinstance(stmt, (ast.FunctionDef, ast.ClassDef)) for n in ast.walk(stmt)]
    return any(isinstance(n, ast.Call) and getattr(n.func, "id", getattr(n.func, "attr", None)) == "require"
               and n.args and isinstance(n.args[0], ast.Constant) and n.args[0].value == "torch" for n in top)


def _torch_side() -> set[str]:
    """Modules that import torch when imported, and those that import one of them."""
    side = {name for name, tree in TREES.items() if _imports_torch_when_imported(name, tree)}
    imports = {name: _top_level_imports(name, tree) & set(MODULES) for name, tree in TREES.items()}
    while True:
        more = {name for name, deps in imports.items() if name not in side and deps & side}
        if not more:
            return side
        side |= more


TORCH_SIDE = _torch_side()
DEVICE_SIDE = sorted(set(MODULES) - TORCH_SIDE)


def test_the_split_is_what_the_docs_say():
    # training and the models need torch when imported; the runtime, the package, calibration,
    # engine building and the CLI must not
    assert {"mesc.models", "mesc.models.heads", "mesc.training.loop"} <= TORCH_SIDE
    for name in ("mesc", "mesc.runtime", "mesc.runtime.pipeline", "mesc.cli", "mesc.engines.build",
                 "mesc.calibration.exits.calibration", "mesc.benchmarks.bench", "mesc.selftest"):
        assert name in DEVICE_SIDE, name


@pytest.mark.parametrize("name", sorted(MODULES))
def test_every_module_defers_its_annotations(name):
    """``X | None`` and ``list[int]`` in annotations are 3.10/3.9 syntax at runtime: deferred,
    they are strings and 3.8 never evaluates them."""
    if name == VERSION_GUARD:
        pytest.skip("mesc/__init__.py must parse on the Pythons it turns away")
    tree = TREES[name]
    body = tree.body[1:] if ast.get_docstring(tree) is not None else tree.body
    first = body[0] if body else None
    assert (isinstance(first, ast.ImportFrom) and first.module == "__future__"
            and any(a.name == "annotations" for a in first.names)), \
        f"{MODULES[name].relative_to(ROOT)}: start with 'from __future__ import annotations'"


def _newer_than_38(tree) -> list[str]:
    problems = []
    for node in ast.walk(tree):
        where = f"line {getattr(node, 'lineno', '?')}"
        if isinstance(node, ast.Attribute) and node.attr in NEW_METHODS:
            problems.append(f"{where}: .{node.attr} is Python {NEW_METHODS[node.attr]}+")
        if isinstance(node, ast.Attribute) and node.attr == "cache" and getattr(node.value, "id", "") == "functools":
            problems.append(f"{where}: functools.cache is 3.9+ (lru_cache(maxsize=None))")
        if isinstance(node, ast.ImportFrom) and node.module == "functools" and any(a.name == "cache" for a in node.names):
            problems.append(f"{where}: functools.cache is 3.9+ (lru_cache(maxsize=None))")
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "zip" \
                and any(k.arg == "strict" for k in node.keywords):
            problems.append(f"{where}: zip(strict=) is 3.10+")
        ops = []
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
            ops = [node.left, node.right]
        elif isinstance(node, ast.AugAssign) and isinstance(node.op, ast.BitOr):
            ops = [node.value]
        dict_like = (ast.Dict, ast.DictComp)
        if any(isinstance(o, dict_like) or (isinstance(o, ast.Call) and getattr(o.func, "id", None) == "dict")
               for o in ops):
            problems.append(f"{where}: dict | dict is 3.9+ ({{**a, **b}} or update)")
    return problems


@pytest.mark.parametrize("name", DEVICE_SIDE)
def test_device_side_code_is_python_38(name):
    path = MODULES[name]
    # the grammar of 3.8: match statements, parenthesised with-items, ... are refused
    ast.parse(path.read_text(), str(path), feature_version=(3, 8))
    assert not _newer_than_38(TREES[name]), f"{path.relative_to(ROOT)}: {_newer_than_38(TREES[name])}"


def test_vermin_finds_nothing_newer_than_38():
    """vermin knows the standard library's additions by version (functools.cache, math.lcm,
    str methods on literals, new modules...); annotations are deferred, so it skips them."""
    vermin = shutil.which("vermin", path=os.path.dirname(sys.executable))
    if vermin is None:
        pytest.skip("vermin is not installed here; the Python 3.8 stage of make test installs it")
    files = [str(MODULES[name]) for name in DEVICE_SIDE if name != VERSION_GUARD]
    res = subprocess.run([vermin, "-t=3.8-", "--violations", "--no-tips", *files],
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-1000:]


@pytest.mark.skipif(importlib.util.find_spec("torch") is not None,
                    reason="torch is installed here: the Python 3.8 stage of make test runs this without it")
def test_every_device_side_module_imports_without_torch():
    probe = ("import importlib, sys\n"
             "failed = []\n"
             "for name in sys.argv[1:]:\n"
             "    try:\n"
             "        importlib.import_module(name)\n"
             "    except Exception as err:\n"
             "        failed.append(f'{name}: {type(err).__name__}: {err}')\n"
             "print('\\n'.join(failed))\n")
    names = [n for n in DEVICE_SIDE if n != "mesc.cli.__main__"]
    res = subprocess.run([sys.executable, "-c", probe, *names], capture_output=True, text=True, cwd=str(ROOT))
    assert res.returncode == 0 and not res.stdout.strip(), res.stdout + res.stderr[-2000:]


@pytest.mark.parametrize("code", [
    "import mesc",
    "exec(compile(open('setup.py').read(), 'setup.py', 'exec'))",
])
def test_python_37_gets_one_line_naming_the_minimum(code):
    """On Python 3.7 and older (JetPack 4 has 3.6), ``import mesc`` and an install from source
    stop with one line naming 3.8, before anything newer than 3.6 could be parsed. Simulated:
    only 3.8 and later are on this machine."""
    fake = f"import sys; sys.version_info = (3, 7, 9, 'final', 0); {code}"
    res = subprocess.run([sys.executable, "-c", fake], capture_output=True, text=True, cwd=str(ROOT))
    assert res.returncode != 0
    last = res.stderr.strip().splitlines()[-1]
    assert "mesc needs Python 3.8 or newer; this is Python 3.7" in last, res.stderr[-2000:]


@pytest.mark.parametrize("path", ["mesc/__init__.py", "setup.py"])
def test_the_version_guards_parse_on_old_pythons(path):
    source = (ROOT / path).read_text()
    ast.parse(source, path, feature_version=(3, 7))  # the oldest grammar ast still checks
    tree = ast.parse(source)
    assert not any(isinstance(n, ast.JoinedStr) for n in ast.walk(tree)), f"{path}: no f-strings (3.6+)"
    assert not any(isinstance(n, ast.ImportFrom) and n.module == "__future__" for n in ast.walk(tree))


@pytest.mark.skipif(importlib.util.find_spec("torch") is not None,
                    reason="torch is installed here: the Python 3.8 stage of make test runs this without it")
@pytest.mark.parametrize("args", [["export", "-o", "{tmp}/pkg"], ["train", "-m", "demo", "--data", "{tmp}", "-o", "{tmp}/m.pt"]])
def test_the_torch_commands_say_in_one_line_what_they_need(tmp_path, args):
    res = subprocess.run([sys.executable, "-m", "mesc.cli", *(a.format(tmp=tmp_path) for a in args)],
                         capture_output=True, text=True, cwd=str(tmp_path))
    assert res.returncode == 2 and "Traceback" not in res.stderr, res.stderr
    (line,) = res.stderr.strip().splitlines()
    assert "pip install 'mesc[export]'" in line and "Python 3.10" in line, line
    assert not (tmp_path / "pkg").exists()
