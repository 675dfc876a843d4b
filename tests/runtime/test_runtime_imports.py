"""The runtime embeds in applications: no torch, no tensorrt on import, load or run."""

import subprocess
import sys

PROBE = """
import sys, numpy as np
import mesc.runtime
import mesc
pipe = mesc.load({pkg!r})
pipe(np.zeros((2, 3, 32, 64), np.float32))
list(pipe.anytime(np.zeros((32, 64, 3), np.uint8)))
heavy = [m for m in ('torch', 'tensorrt') if m in sys.modules]
print(heavy)
sys.exit(1 if heavy else 0)
"""


def test_runtime_never_imports_torch(pkg_host):
    res = subprocess.run([sys.executable, "-c", PROBE.format(pkg=str(pkg_host))], capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr[-2000:]
