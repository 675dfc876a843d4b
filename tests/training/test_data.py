"""Streamed training data: the crop, the augmentation and the loader's batches."""

import numpy as np
import pytest
import torch

from mesc.datasets import synthetic
from mesc.errors import TrainError
from mesc.training import data as training_data


def test_random_crop_windows_images_and_masks_alike():
    image = np.arange(8 * 12 * 3, dtype=np.uint8).reshape(8, 12, 3)
    mask = image[..., 0].copy()
    im, mk = training_data.random_crop(image, mask, (4, 6), np.random.default_rng(0))
    assert im.shape == (4, 6, 3) and np.array_equal(im[..., 0], mk)
    with pytest.raises(TrainError, match="crop 16x6 is larger"):
        training_data.random_crop(image, mask, (16, 6), np.random.default_rng(0))


def test_augment_scales_masks_nearest_and_pads_with_ignore():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (16, 32, 3), dtype=np.uint8)
    mask = rng.integers(0, 5, (16, 32), dtype=np.uint8)
    for seed in range(10):
        im, mk = training_data.augment(image, mask, np.random.default_rng(seed), crop=(16, 24), scale=(0.5, 2.0),
                                       jitter=0.3)
        assert im.shape == (16, 24, 3) and mk.shape == (16, 24)
        assert set(np.unique(mk)) <= set(range(5)) | {255}  # nearest: no invented ids
    # scaled down to half: the pad (bottom/right) is ignore
    im, mk = training_data.augment(image, mask, np.random.default_rng(0), crop=(16, 32), scale=(0.5, 0.5),
                                   flip=False)
    assert (mk[8:] == 255).all() and (mk[:, 16:] == 255).all() and (mk[:8, :16] != 255).all()
    assert (im[8:] == 0).all()


def test_samples_depend_on_seed_stage_epoch_index_only(tmp_path):
    folder = synthetic.generate(tmp_path / "d", 6, seed=3, size=(32, 64))
    aug = {"crop": (16, 32), "scale": (0.5, 2.0), "flip": True, "jitter": 0.2}
    a, b = training_data.SegStream(folder, aug, seed=1), training_data.SegStream(folder, aug, seed=1)
    assert all(torch.equal(a[i][0], b[i][0]) for i in range(6))
    b.epoch = 1
    assert not all(torch.equal(a[i][0], b[i][0]) for i in range(6))
    loader, sampler = training_data.make_loader(a, 4, workers=0, seed=1)
    loader2, sampler2 = training_data.make_loader(a, 4, workers=2, seed=1)
    sampler.set_epoch(2)
    sampler2.set_epoch(2)
    assert all(torch.equal(x[0], y[0]) and torch.equal(x[1], y[1]) for x, y in zip(loader, loader2))
    # two processes' batches k together are the single-process batch k
    halves = [training_data.make_loader(a, 4, seed=1, rank=r, world=2) for r in (0, 1)]
    for _, s in halves:
        s.set_epoch(2)
    parts = [list(s) for _, s in halves]
    assert sorted(parts[0][:2] + parts[1][:2]) == sorted(list(sampler)[:4])
