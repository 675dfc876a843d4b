"""The shipped demo checkpoint (mesc/models/demo.pt) still loads and still segments.

Reproduce the checkpoint (about 16 min on one shared CPU core; two runs, the second continues
the first at a lower learning rate):

    mesc synth-data -o /tmp/mesc_demo/train --count 800 --seed 1 --size 128x256 --difficulty 0:1
    mesc synth-data -o /tmp/mesc_demo/val   --count 120 --seed 2 --size 128x256 --difficulty 0:1
    mesc train --model demo --data /tmp/mesc_demo/train --val /tmp/mesc_demo/val \\
        --epochs1 14 --epochs2 6 --batch 16 --crop 64x128 --lr 2e-3 --alpha 1.0 --seed 0 --threads 1 \\
        -o /tmp/mesc_demo/demo.pt
    mesc train --model demo --weights /tmp/mesc_demo/demo.pt --data /tmp/mesc_demo/train \\
        --val /tmp/mesc_demo/val --epochs1 8 --epochs2 4 --batch 16 --crop 64x128 --lr 1e-3 \\
        --alpha 1.0 --seed 1 --threads 1 -o mesc/models/demo.pt

Validation (120 images, seed 2) per-exit mIoU: 44.0 / 52.7 / 57.5 %.
"""

from pathlib import Path

import pytest
import torch

from mesc import data, models, training

CHECKPOINT = Path(models.__file__).with_name("demo.pt")
# Per-exit mIoU of the shipped checkpoint on the split below, measured when it was trained.
RECORDED_MIOU = [0.4311, 0.5055, 0.5448]
TOLERANCE = 0.02  # evaluation is deterministic on CPU; this absorbs BLAS/library differences


@pytest.fixture(scope="module")
def heldout(tmp_path_factory):
    # seed 77 appears in neither the training (1) nor the validation (2) split
    return data.generate(tmp_path_factory.mktemp("demo") / "heldout", 24, seed=77, size=(128, 256))


def test_demo_checkpoint_is_small_float32_and_loads_strictly():
    assert CHECKPOINT.is_file(), "mesc/models/demo.pt is missing"
    assert CHECKPOINT.stat().st_size < 5 * 2**20
    state = torch.load(CHECKPOINT, weights_only=True)
    assert all(v.dtype == torch.float32 for v in state.values() if v.is_floating_point())
    models.load_checkpoint(models.create("demo", pretrained=False), CHECKPOINT)  # strict


def test_demo_exits_get_better_with_depth_and_match_the_record(heldout):
    torch.set_num_threads(2)
    model = models.create("demo")  # picks up the shipped demo.pt
    miou = training.evaluate_miou(model, heldout, log=None)
    assert len(miou) == 3
    assert miou[0] < miou[1] < miou[2], miou
    assert miou == pytest.approx(RECORDED_MIOU, abs=TOLERANCE)
