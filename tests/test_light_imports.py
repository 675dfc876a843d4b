"""`import mesc`, `mesc --help` and the runtime never import torch or tensorrt."""

import subprocess
import sys

import pytest

PROBE = "import sys; {stmt}; heavy = [m for m in ('torch', 'tensorrt') if m in sys.modules]; print(heavy); sys.exit(1 if heavy else 0)"


@pytest.mark.parametrize("stmt", [
    "import mesc",
    "import mesc.package, mesc.describe, mesc.errors",
    "from mesc.cli import cli; cli.main(['--help'], standalone_mode=False)",
    "from mesc.cli import cli; cli.main(['export', '--help'], standalone_mode=False)",
    *[f"from mesc.cli import cli; cli.main(['{c}', '--help'], standalone_mode=False)"
      for c in ("run", "bench", "calibrate", "build", "prepare", "inspect", "synth-data", "train")],
    "import mesc.runtime, mesc.policy, mesc.data",
])
def test_no_heavy_imports(stmt):
    res = subprocess.run([sys.executable, "-c", PROBE.format(stmt=stmt)], capture_output=True, text=True)
    assert res.returncode == 0, f"{stmt!r} imported {res.stdout.strip()} {res.stderr[-500:]}"


def test_missing_extra_names_the_extra():
    from mesc.errors import MissingDependencyError
    from mesc.lazy import require

    with pytest.raises(MissingDependencyError, match=r"pip install 'mesc\[trt\]'"):
        require("tensorrt_definitely_not_here", extra="trt")
