"""Toy packages for the tests: exported in this Python when it has torch, otherwise by a Python
that has (MESC_EXPORT_PYTHON, else the main .venv). The Python 3.8 stage of `make test` and
.venv-serve have no torch: they run the device side on packages the main environment exports."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

TOYS = HERE / "toys.py"

# what the other Python runs: the model (toys.<factory>(*args), or its "path:factory" spec)
# exported with ExportOptions(**options)
_EXPORT = """import ast, sys
sys.path.insert(0, sys.argv[1])
import toys
from mesc.exporters.export import ExportOptions, export
factory, args, spec, out, options = sys.argv[2], ast.literal_eval(sys.argv[3]), sys.argv[4], sys.argv[5], ast.literal_eval(sys.argv[6])
export(spec or getattr(toys, factory)(*args), out, options=ExportOptions(**options))
"""


def has_torch() -> bool:
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


def export_python() -> str:
    """A Python with torch and mesc's export extra, or a skip saying how to get one."""
    py = os.environ.get("MESC_EXPORT_PYTHON") or str(ROOT / ".venv" / "bin" / "python")
    if not Path(py).exists():
        pytest.skip(f"torch is not installed here and there is no Python with it to export the toy package "
                    f"({py}); make test sets MESC_EXPORT_PYTHON")
    return py


def export_toy(factory: str, out, *args, by_path: bool = False, **options) -> Path:
    """Export ``toys.<factory>(*args)`` to ``out`` with ``ExportOptions(**options)`` (literals
    only: they may cross to another Python); returns the package's root. ``by_path`` exports the
    model spec "<tests>/toys.py:<factory>" instead, which the manifest records (the eager
    baseline rebuilds the model from it)."""
    spec = f"{TOYS}:{factory}" if by_path else ""
    if has_torch():
        import toys

        from mesc.exporters.export import ExportOptions, export

        return export(spec or getattr(toys, factory)(*args), out, options=ExportOptions(**options)).root
    cmd = [export_python(), "-c", _EXPORT, str(HERE), factory, repr(args), spec, str(out), repr(options)]
    # the other Python's own site-packages, not this one's (PYTHONPATH would mix them)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env, cwd=str(ROOT))
    if res.returncode != 0:
        pytest.fail(f"exporting toys.{factory} with {cmd[0]} failed:\n{res.stderr[-3000:]}")
    return Path(out)
