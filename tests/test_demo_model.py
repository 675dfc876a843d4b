"""The shipped demo checkpoint (mesc/models/demo.pt) still loads and still segments.

The full recipe, from scratch (the corrected MESS recipe: Eq. 3 with alpha = 0.5, rapid dilation
from the exit point's dilation; the second run trains the early exits alone, on whole images, from
the first run's weights). On a GPU it takes a few minutes. On the 2-core development machine shared
with eight other jobs (issue 26's run, load average 11-14), the first command's stage-1 epochs took
13-29 min each (0.7-1.6 images/s, about 4-6 CPU-minutes an epoch), so its 34 + 10 epochs and the
second command's 15 take several sessions there; each epoch writes ``<output>.train.pt`` and the
same command with ``--resume <output>.train.pt`` continues from it:

    mesc synth-data -o /tmp/mesc_demo/train --count 1200 --seed 1 --size 128x256 --difficulty 0:1
    mesc synth-data -o /tmp/mesc_demo/val   --count 120 --seed 2 --size 128x256 --difficulty 0:1
    mesc train --model demo --data /tmp/mesc_demo/train --val /tmp/mesc_demo/val \\
        --epochs1 34 --epochs2 10 --batch 16 --crop 96x192 --lr 2e-3 --alpha 0.5 --seed 0 \\
        --scale 1:1 --jitter 0 --schedule cosine --threads 2 -o /tmp/mesc_demo/stage1.pt
    mesc train --model demo --weights /tmp/mesc_demo/stage1.pt --data /tmp/mesc_demo/train \\
        --val /tmp/mesc_demo/val --epochs1 0 --epochs2 15 --batch 16 --lr 1e-3 --alpha 0.5 --seed 1 \\
        --scale 1:1 --jitter 0 --schedule cosine --threads 2 -o mesc/models/demo.pt

(``--device cuda:0`` on a GPU.) Eq. 2 as the paper writes it against the prose round-robin (the
default): the first command with ``--exit-dropout eq2 --epochs2 0``, same seeds, compared on the
per-exit validation mIoU it logs every epoch (``<output>.train.jsonl``); the default follows the
better one once both have run their 34 epochs.

What the shipped checkpoint is: the stage-1 backbone and final
head of the previous demo.pt (trained with the first command above, which the corrections leave
unchanged but for exit1's head dilations), and its early heads retrained by the corrected stage 2
from that checkpoint's heads on whole images (the GPU loan was paused before the full recipe could run there):

    mesc train --model demo --weights demo-previous.pt --data /tmp/mesc_demo/train \\
        --val /tmp/mesc_demo/val --epochs1 0 --epochs2 6 --batch 16 --lr 1e-3 --alpha 0.5 --seed 1 \\
        --threads 2 --scale 1:1 --jitter 0 --schedule cosine -o mesc/models/demo.pt

(371 s on the 2-core machine.) Validation (120 images, seed 2) per-exit mIoU: 69.8 / 69.8 / 72.8 %
(the previous checkpoint: 69.3 / 72.2 / 72.8 %; its exit1 was trained at rapid dilations 2, 4,
where the exit point already convolves at 2, so they are now 4, 8 and the head relearnt them).
"""

from pathlib import Path

import pytest
import torch

from mesc import models, training
from mesc.datasets import synthetic

CHECKPOINT = Path(models.__file__).with_name("demo.pt")
# Per-exit mIoU of the shipped checkpoint on the split below, measured when it was trained.
RECORDED_MIOU = [0.6861, 0.6871, 0.7109]
TOLERANCE = 0.02  # evaluation is deterministic on CPU; this absorbs BLAS/library differences


@pytest.fixture(scope="module")
def heldout(tmp_path_factory):
    # seed 77 appears in neither the training (1) nor the validation (2) split
    return synthetic.generate(tmp_path_factory.mktemp("demo") / "heldout", 24, seed=77, size=(128, 256))


def test_demo_checkpoint_is_small_float32_and_loads_strictly():
    assert CHECKPOINT.is_file(), "mesc/models/demo.pt is missing"
    assert CHECKPOINT.stat().st_size < 8 * 2**20  # float32 5.4 MiB, most of it the ASPP head
    state = torch.load(CHECKPOINT, weights_only=True)
    assert all(v.dtype == torch.float32 for v in state.values() if v.is_floating_point())
    models.load_checkpoint(models.create("demo", pretrained=False), CHECKPOINT)  # strict


@pytest.fixture(scope="module")
def shipped_miou(heldout):
    torch.set_num_threads(2)
    model = models.create("demo")  # picks up the shipped demo.pt
    return training.evaluate_miou(model, heldout, log=None)


def test_demo_exits_get_better_with_depth_and_match_the_record(shipped_miou):
    assert len(shipped_miou) == 3
    # exit1 only just beats exit0 on these 24 scenes (0.1 pp); the final exit is 2.4 pp ahead
    assert max(shipped_miou[:2]) < shipped_miou[2] and shipped_miou[1] > shipped_miou[0] - 0.01, shipped_miou
    assert shipped_miou == pytest.approx(RECORDED_MIOU, abs=TOLERANCE)
