"""--policy-at native: the policy reads each exit's logits before the head's final upsampling."""

import numpy as np
import torch

import mesc
from mesc.exporters.export import ExportOptions, export
from mesc.exporters.verify import run_chain
from mesc.policy import mess_confidence
from toys import SkipNet


def test_native_policy_matches_reference_on_native_logits(tmp_path):
    torch.manual_seed(0)
    model = SkipNet().eval()
    pkg = export(model, tmp_path / "pkg", options=ExportOptions(policy_at="native", th_pix=0.5, dynamic_batch=True))
    x = torch.randn(2, 3, 32, 64, generator=torch.Generator().manual_seed(5))
    env = run_chain(pkg, x.numpy())
    with torch.no_grad():
        outs = model(x)
    for ex in pkg.exits:
        assert ex.policy["at"] == "native" and ex.policy["stride"] == 1
        native = env[ex.policy_logits]
        full = outs[ex.index].numpy()
        # native logits are the head's pre-upsampling map: 1/os of the output size
        assert native.shape[-2:] == (32 // ex.output_stride, 64 // ex.output_stride)
        want = mess_confidence(native, 0.5, "top1", True, 1)
        np.testing.assert_allclose(env[ex.confidence], want, atol=1.0 / native[0, 0].size)
        # labels stay at the output resolution: argmax of the model's own (upsampled) logits
        np.testing.assert_array_equal(env[ex.labels], full.argmax(1))


def test_runtime_hands_the_native_logits_to_calibration(tmp_path):
    pkg = export(SkipNet().eval(), tmp_path / "pkg", options=ExportOptions(policy_at="native"))
    x = np.random.default_rng(0).standard_normal((1, 3, 32, 64)).astype(np.float32)
    with mesc.load(pkg.root) as pipe:
        steps = list(pipe.anytime(x, logits=True))
    for ex, r in zip(pkg.exits, steps):
        r = r[0]
        assert r.logits.shape[-2:] == (32, 64)
        assert r.policy_logits.shape[-2:] == (32 // ex.output_stride, 64 // ex.output_stride)


def test_upsampling_and_labels_move_to_a_tail_run_only_for_leaving_images(tmp_path):
    torch.manual_seed(0)
    model = SkipNet().eval()
    pkg = export(model, tmp_path / "pkg", options=ExportOptions(policy_at="native", th_pix=0.5,
                                                                 dynamic_batch=True))
    kinds = [(s.name, s.kind) for s in pkg.segments]
    assert kinds == [("entry", "entry"), ("chunk0", "chunk"), ("head0", "head"), ("tail0", "tail"), ("chunk1", "chunk"),
                     ("head1", "head"), ("tail1", "tail"), ("head2", "head"), ("tail2", "tail")]
    for ex in pkg.exits:
        head_out = {o.name for o in pkg.segment(ex.segment).outputs}
        assert ex.confidence in head_out and ex.labels not in head_out and ex.logits not in head_out
        assert {ex.labels, ex.logits} <= {o.name for o in pkg.segment(ex.tail).outputs}
    assert [s.name for s in pkg.segments_until("exit1")] == ["entry", "chunk0", "chunk1", "head1", "tail1"]

    x = np.random.default_rng(1).standard_normal((6, 3, 32, 64)).astype(np.float32)
    with torch.no_grad():
        outs = [o.numpy() for o in model(torch.from_numpy(x))]
    with mesc.load(pkg.root) as pipe:
        native = pipe.tensors(x)["exit0_native_logits"]
        p = np.exp(native - native.max(1, keepdims=True))
        top1 = (1.0 / p.sum(1)).ravel()
        pipe.set_thresholds("exit0", th_pix=float(np.median(top1)))
        conf0 = np.sort(pipe.tensors(x)["exit0_confidence"])
        # about half the images leave at exit 0: th_img between the middle confidences
        pipe.set_thresholds("exit0", th_img=float(conf0[2] + conf0[3]) / 2)
        pipe.set_thresholds("exit1", th_img=1.0)
        batch = pipe(x)
        single = [pipe(x[i:i + 1])[0] for i in range(len(x))]
        budget = pipe(x, exit="exit1")
    leaving = [r.exit_index == 0 for r in batch]
    assert any(leaving) and not all(leaving)
    for i, r in enumerate(batch):
        np.testing.assert_array_equal(r.labels, outs[r.exit_index][i].argmax(0))
        assert r.exit_index == single[i].exit_index
        np.testing.assert_array_equal(r.labels, single[i].labels)
        assert ("tail0" in r.timings["segments"]) == leaving[i]
    for i, r in enumerate(budget):
        np.testing.assert_array_equal(r.labels, outs[1][i].argmax(0))
