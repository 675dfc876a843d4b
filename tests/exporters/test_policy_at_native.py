"""--policy-at native: the policy reads each exit's logits before the head's final upsampling."""

import numpy as np
import torch

import mesc
from mesc.exporters.export import ExportOptions, export
from mesc.exporters.verify import run_chain
from mesc.policy import mess_confidence
from toy_models import SkipNet


def test_native_policy_matches_reference_on_native_logits(tmp_path):
    torch.manual_seed(0)
    model = SkipNet().eval()
    pkg = export(model, tmp_path / "pkg", options=ExportOptions(policy_at="native", th_pix=0.5, dynamic_batch=True))
    x = torch.randn(2, 3, 32, 64, generator=torch.Generator().manual_seed(5))
    env = run_chain(pkg, x.numpy())
    with torch.no_grad():
        outs = model(x)
    for ex in pkg.exits:
        assert ex["policy"]["at"] == "native" and ex["policy"]["stride"] == 1
        native = env[ex["policy_logits"]]
        full = outs[ex["index"]].numpy()
        # native logits are the head's pre-upsampling map: 1/os of the output size
        assert native.shape[-2:] == (32 // ex["output_stride"], 64 // ex["output_stride"])
        want = mess_confidence(native, 0.5, "top1", True, 1)
        np.testing.assert_allclose(env[ex["confidence"]], want, atol=1.0 / native[0, 0].size)
        # labels stay at the output resolution: argmax of the model's own (upsampled) logits
        np.testing.assert_array_equal(env[ex["labels"]], full.argmax(1))


def test_runtime_hands_the_native_logits_to_calibration(tmp_path):
    pkg = export(SkipNet().eval(), tmp_path / "pkg", options=ExportOptions(policy_at="native"))
    x = np.random.default_rng(0).standard_normal((1, 3, 32, 64)).astype(np.float32)
    with mesc.load(pkg.root) as pipe:
        steps = list(pipe.anytime(x, logits=True))
    for ex, r in zip(pkg.exits, steps):
        r = r[0]
        assert r.logits.shape[-2:] == (32, 64)
        assert r.policy_logits.shape[-2:] == (32 // ex["output_stride"], 64 // ex["output_stride"])
