"""A test may skip only for an optional third-party package that is absent, never because a
mesc module (or a core dependency) fails to import: that is a bug, and its tests must fail."""

import ast
from pathlib import Path

TESTS = Path(__file__).parent
# optional extras (trt, export, plot, prepare, serve, hf); everything else is core or mesc itself
OPTIONAL = {"av", "tensorrt", "polygraphy", "cuda", "torch", "matplotlib", "onnxconverter_common", "pytriton", "tritonclient",
            "transformers"}
IMPORT_ERRORS = {"ImportError", "ModuleNotFoundError", "MissingDependencyError"}


def _top(module: str) -> str:
    return module.split(".")[0]


def _catches_import_error(handler: ast.ExceptHandler) -> bool:
    kinds = handler.type.elts if isinstance(handler.type, ast.Tuple) else [handler.type]
    names = {k.attr if isinstance(k, ast.Attribute) else getattr(k, "id", None) for k in kinds}
    return handler.type is None or bool(names & IMPORT_ERRORS)


def _is_skip(stmt) -> bool:
    call = stmt.value if isinstance(stmt, ast.Expr) else None
    return isinstance(call, ast.Call) and getattr(call.func, "attr", None) == "skip"


def _optional_imports_only(body) -> bool:
    """The try body imports optional packages and otherwise only passes, returns a constant or
    skips: nothing else in it could raise the ImportError that the handler catches."""
    imports = 0
    for stmt in body:
        if isinstance(stmt, ast.Import):
            mods = [a.name for a in stmt.names]
        elif isinstance(stmt, ast.ImportFrom) and stmt.level == 0:
            mods = [stmt.module]
        elif isinstance(stmt, ast.Pass) or _is_skip(stmt) or (
                isinstance(stmt, ast.Return) and isinstance(stmt.value, (ast.Constant, type(None)))):
            continue
        else:
            return False
        if not all(_top(m) in OPTIONAL for m in mods):
            return False
        imports += 1
    return imports > 0


def violations(source: str, where: str) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Try) and any(_catches_import_error(h) for h in node.handlers):
            if not _optional_imports_only(node.body):
                found.append(f"{where}:{node.lineno}: an ImportError caught around something other than "
                             f"importing an optional package {sorted(OPTIONAL)}")
        if isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "importorskip":
            arg = node.args[0] if node.args else None
            name = arg.value if isinstance(arg, ast.Constant) and isinstance(arg.value, str) else None
            if name is None or _top(name) not in OPTIONAL:
                found.append(f"{where}:{node.lineno}: importorskip({ast.unparse(arg) if arg else ''}) is not an "
                             f"optional package {sorted(OPTIONAL)}")
    return found


def test_no_test_turns_a_failing_import_into_a_skip():
    found = [v for path in sorted(TESTS.rglob("*.py"))
             for v in violations(path.read_text(), str(path.relative_to(TESTS)))]
    assert not found, "\n".join(found)


def test_the_rule_catches_what_it_is_for():
    bad = [
        "try:\n    pkg = export(model)\nexcept ImportError as err:\n    pytest.skip(str(err))\n",
        "try:\n    import tensorrt\n    build(pkg)\nexcept ImportError:\n    pytest.skip('no trt')\n",
        "try:\n    import mesc.exporters.policy.mess\nexcept ImportError:\n    ok = False\n",
        "try:\n    from mesc.calibration import int8\nexcept (ValueError, ModuleNotFoundError):\n    pass\n",
        "pytest.importorskip('onnxruntime')\n",
        "pytest.importorskip('mesc.exporters.trace')\n",
    ]
    good = [
        "try:\n    import tensorrt\nexcept ImportError:\n    pass\n",
        "try:\n    import tensorrt\n    return True\nexcept ImportError:\n    return False\n",
        "pytest.importorskip('matplotlib')\n",
        "try:\n    run()\nexcept ValueError:\n    pass\n",
    ]
    assert all(violations(src, "x.py") for src in bad)
    assert not [src for src in good if violations(src, "x.py")]
