"""Scoring at the mask's resolution: the bilinear resize is torch's (align_corners=False),
and the labels are its argmax."""

import numpy as np
import pytest

from mesc.evaluation.scoring import confusion_at_mask, labels_at, upsample_bilinear


@pytest.mark.parametrize("size", [(8, 12), (16, 24), (5, 7), (3, 4)])
def test_upsample_is_torch_bilinear(size):
    torch = pytest.importorskip("torch")
    x = np.random.default_rng(0).normal(size=(3, 4, 6)).astype(np.float32)
    ref = torch.nn.functional.interpolate(torch.from_numpy(x)[None], size=size, mode="bilinear",
                                          align_corners=False)[0].numpy()
    np.testing.assert_allclose(upsample_bilinear(x, size), ref, atol=1e-5)


def test_labels_at_a_hand_computed_size():
    # two classes over a 1 x 2 map: class 1 wins on the right; at 2x the middle columns are
    # the 3:1 and 1:3 blends (0.75 * -1 + 0.25 * 1 < 0 -> class 0 on the left of the middle)
    logits = np.array([[[1.0, -1.0]], [[-1.0, 1.0]]], np.float32)
    assert labels_at(logits, (2, 4)).tolist() == [[0, 0, 1, 1]] * 2
    assert labels_at(logits, (1, 2), labels=np.array([[7, 7]])).tolist() == [[7, 7]]  # own size: as given


def test_labels_in_row_blocks_equal_the_whole_resize():
    x = np.random.default_rng(1).normal(size=(4, 70, 9)).astype(np.float32)
    assert np.array_equal(labels_at(x, (300, 20)), upsample_bilinear(x, (300, 20)).argmax(0))


def test_confusion_at_mask_ignores_255():
    logits = np.array([[[1.0, -1.0]], [[-1.0, 1.0]]], np.float32)
    mask = np.array([[0, 1, 1, 255]] * 2, np.uint8)
    cm = confusion_at_mask(logits, mask, 2)
    assert cm.tolist() == [[2, 0], [2, 2]]
