"""Training data: a ``torch.utils.data.Dataset`` streamed from disk over ``read_folder`` pairs,
the usual segmentation augmentation (random scale, crop, flip, colour jitter) and the loader; a
validation folder held in memory (:class:`SegData`); images turned into the network's input as
the exported graph expects them (:func:`to_input`).

Each sample's randomness comes from ``(seed, stage, epoch, index)`` alone, never from a shared
generator: the same batch is drawn whatever the number of workers or processes, so a resumed or
distributed run sees exactly the images and augmentations of a plain one.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from mesc.datasets import read_folder
from mesc.datasets.images import load_image, load_pair
from mesc.datasets.labels import IGNORE
from mesc.datasets.synthetic import read_meta
from mesc.errors import MescError, TrainError

# The exporter writes this normalisation into the manifest unless the model carries its own, so
# training must feed the network exactly the same way.
DEFAULT_NORMALIZATION = {"scale": 255.0, "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}



def random_crop(image, mask, crop, rng):
    """The same random ``crop`` (H, W) window of an HxWx3 image and its HxW mask."""
    ch, cw = crop
    h, w = image.shape[:2]
    check_crop(crop, h, w)
    y, x = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
    return image[y: y + ch, x: x + cw], mask[y: y + ch, x: x + cw]


def check_crop(crop, h: int, w: int) -> None:
    if crop[0] > h or crop[1] > w:
        raise TrainError(f"crop {crop[0]}x{crop[1]} is larger than the images ({h}x{w})")


def _rescale(image, mask, factor: float):
    from PIL import Image

    h, w = image.shape[:2]
    size = (max(1, round(w * factor)), max(1, round(h * factor)))
    # masks are class ids: nearest, never interpolated into ids that are not there
    return (np.asarray(Image.fromarray(image).resize(size, Image.BILINEAR)),
            np.asarray(Image.fromarray(mask).resize(size, Image.NEAREST)))


def _pad_to(image, mask, h: int, w: int):
    """Pad bottom/right up to HxW: black pixels, labelled ``IGNORE`` so they cost no loss."""
    ph, pw = max(0, h - image.shape[0]), max(0, w - image.shape[1])
    if ph or pw:
        image = np.pad(image, ((0, ph), (0, pw), (0, 0)))
        mask = np.pad(mask, ((0, ph), (0, pw)), constant_values=IGNORE)
    return image, mask


def _jitter(image, strength: float, rng):
    """Brightness, contrast and saturation each scaled by a factor in [1-s, 1+s]."""
    b, c, s = rng.uniform(1 - strength, 1 + strength, 3)
    x = image.astype(np.float32) * b
    x = (x - x.mean()) * c + x.mean()
    grey = x.mean(axis=2, keepdims=True)
    x = (x - grey) * s + grey
    return np.clip(x, 0, 255).astype(np.uint8)


def augment(image, mask, rng, crop=None, scale=(1.0, 1.0), flip=True, jitter=0.0):
    """One training sample: scaled by a random factor in ``scale``, padded where smaller than
    the crop (or than the original size when ``crop`` is None), cropped, flipped, colour-jittered."""
    h, w = image.shape[:2]
    out_h, out_w = crop or (h, w)
    factor = float(rng.uniform(*scale))
    if factor != 1.0:
        image, mask = _rescale(image, mask, factor)
    image, mask = _pad_to(image, mask, out_h, out_w)
    image, mask = random_crop(image, mask, (out_h, out_w), rng)
    if flip and rng.random() < 0.5:
        image, mask = image[:, ::-1], mask[:, ::-1]
    if jitter:
        image = _jitter(image, jitter, rng)
    return np.ascontiguousarray(image), np.ascontiguousarray(mask)


class SegStream(torch.utils.data.Dataset):
    """A labelled folder read one image at a time; augmented when ``aug`` (keyword arguments of
    :func:`augment`) is given. Set ``epoch`` and ``stage`` before each epoch."""

    def __init__(self, path, aug: dict | None = None, seed: int = 0, split: str | None = None):
        self.pairs = read_folder(path, require_masks=True, split=split)
        self.aug, self.seed = aug, seed
        self.stage, self.epoch = 1, 0

    def __len__(self):
        return len(self.pairs)

    def first_size(self) -> tuple[int, int]:
        return load_image(self.pairs[0][0]).shape[:2]

    def __getitem__(self, index):
        image, mask = load_pair(*self.pairs[index])
        if self.aug is not None:
            rng = np.random.default_rng([self.seed, self.stage, self.epoch, index])
            image, mask = augment(image, mask, rng, **self.aug)
        # np.asarray of a PIL image is read-only; torch wants writable memory
        return (torch.from_numpy(np.require(image, requirements="CW")),
                torch.from_numpy(np.require(mask, requirements="CW")))


def collate(samples):
    shapes = {tuple(im.shape) for im, _ in samples}
    if len(shapes) != 1:
        raise TrainError(f"images in one batch differ in size ({sorted(shapes)[:4]}); pass a crop "
                         f"so every sample has one size")
    return torch.stack([im for im, _ in samples]), torch.stack([m for _, m in samples])


def make_loader(dataset, batch: int, workers: int = 0, shuffle: bool = True, seed: int = 0,
                rank: int = 0, world: int = 1):
    """A DataLoader over ``dataset`` and its sampler (call ``sampler.set_epoch`` each epoch).

    ``batch`` is the global batch: each of ``world`` processes loads ``batch // world`` images,
    and with a DistributedSampler the processes' batches k together are exactly the
    single-process batch k of the same permutation."""
    sampler = torch.utils.data.DistributedSampler(dataset, num_replicas=world, rank=rank, shuffle=shuffle,
                                                  seed=seed)
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch // world, sampler=sampler,
                                         num_workers=workers, collate_fn=collate,
                                         pin_memory=torch.cuda.is_available(), drop_last=False)
    return loader, sampler


class SegData:
    """A data folder held in memory (synthetic sets are small): uint8 images and masks."""

    def __init__(self, path, require_masks: bool = True, split: str | None = None):
        self.path = Path(path)
        pairs = read_folder(path, require_masks=require_masks, split=split)
        loaded = [load_pair(i, m) for i, m in pairs]
        shapes = {im.shape for im, _ in loaded}
        if len(shapes) != 1:
            raise MescError(f"data folder {path}: images differ in size ({sorted(shapes)[:4]}); "
                            f"training needs one size")
        self.files = [i for i, _ in pairs]
        self.images = np.stack([im for im, _ in loaded])
        self.masks = np.stack([m for _, m in loaded]) if require_masks else None
        meta = read_meta(path)
        self.difficulty = ([e["difficulty"] for e in meta["images"]]
                           if len(meta.get("images", [])) == len(self.files) else None)

    def __len__(self):
        return len(self.images)


def normalization_of(model) -> dict:
    return getattr(model, "input_normalization", DEFAULT_NORMALIZATION)


def to_input(images: np.ndarray, norm: dict) -> torch.Tensor:
    """N x H x W x 3 uint8 (array or tensor) -> normalised N x 3 x H x W float32, as the exported
    graph expects, on the tensor's device."""
    if not isinstance(images, torch.Tensor):
        images = torch.from_numpy(np.ascontiguousarray(images))
    x = images.permute(0, 3, 1, 2).float() / norm["scale"]
    mean = torch.tensor(norm["mean"], device=x.device).view(1, -1, 1, 1)
    std = torch.tensor(norm["std"], device=x.device).view(1, -1, 1, 1)
    return (x - mean) / std
