"""torchrun with 2 CPU processes (gloo) trains to the same weights as one process on the same
global batch."""

import os
import subprocess
import sys

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from click.testing import CliRunner

from mesc.cli import cli
from mesc.datasets import synthetic

# float32 sums reduced in a different order (two half-batch gradients averaged); the losses are
# averaged over the whole batch's pixel counts (mesc.training.losses.batch_count), so rescale padding and
# PFD's positive pixels, whose counts differ between the halves, change nothing.
TOLERANCE = 1e-6


class NoBatchStats(nn.Module):
    """Two exits, no BatchNorm: per-process statistics would differ from the whole batch's."""

    def __init__(self, num_classes=6, width=8):
        super().__init__()
        self.b1 = nn.Sequential(nn.Conv2d(3, width, 3, stride=2, padding=1), nn.ReLU())
        self.b2 = nn.Sequential(nn.Conv2d(width, width, 3, stride=2, padding=1), nn.ReLU())
        self.h1, self.h2 = nn.Conv2d(width, num_classes, 1), nn.Conv2d(width, num_classes, 1)

    def forward(self, x):
        f1 = self.b1(x)
        f2 = self.b2(f1)
        return [F.interpolate(h(f), size=x.shape[-2:], mode="bilinear", align_corners=False)
                for h, f in ((self.h1, f1), (self.h2, f2))]


def tiny_nobn():
    torch.manual_seed(0)
    return NoBatchStats()


@pytest.mark.slow
def test_two_gloo_processes_match_one(tmp_path):
    scenes = synthetic.generate(tmp_path / "train", 8, seed=1, size=(32, 64))
    # both stages, and rescaling that pads some crops (ignored pixels) differently in the halves
    args = ["--model", f"{__file__}:tiny_nobn", "--data", str(scenes), "--epochs1", "2", "--epochs2", "1",
            "--batch", "4", "--crop", "32x48", "--scale", "0.5:1", "--lr", "1e-2", "--threads", "1"]
    single = tmp_path / "single.pt"
    res = CliRunner().invoke(cli, ["train", *args, "-o", str(single)])
    assert res.exit_code == 0, res.output
    two = tmp_path / "two.pt"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                           "-m", "mesc.training.dist", *args, "-o", str(two)],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    a, b = torch.load(single, weights_only=True), torch.load(two, weights_only=True)
    assert a.keys() == b.keys()
    diff = max((a[k] - b[k]).abs().max().item() for k in a)
    print(f"DDP vs single process: max |weight difference| {diff:.2e}")
    assert diff < TOLERANCE, diff
    assert (tmp_path / "two.train.pt").is_file()  # rank 0's training checkpoint


def test_training_never_imports_the_cli():
    """The torchrun entry and everything it runs stand below the CLI: no module of mesc.training
    imports mesc.cli, at the top or inside a function."""
    import ast
    from pathlib import Path

    import mesc.training

    found = []
    for path in sorted(Path(mesc.training.__file__).parent.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            found += [f"{path.name}: {n}" for n in names if n == "mesc.cli" or n.startswith("mesc.cli.")]
    assert not found, found
