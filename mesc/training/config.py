"""The training recipe (:class:`TrainConfig`), checked before anything trains, and the
learning-rate schedules."""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

from mesc.errors import TrainError
from mesc.training.losses import DEFAULT_ALPHA, DEFAULT_EXIT_DROPOUT, EXIT_DROPOUT


@dataclass
class TrainConfig:
    epochs1: int = 10
    epochs2: int = 5
    batch: int = 8
    lr: float = 2e-3
    lr2: float | None = None  # stage 2 learning rate (default: lr)
    weight_decay: float = 1e-4
    alpha: float = DEFAULT_ALPHA  # MESS Eq. 3: 1 = positive-filtered CE alone, 0 = distillation alone
    exit_dropout: str = DEFAULT_EXIT_DROPOUT  # stage 1's schedule: "eq2" or "prose" (see exit_dropout_schedule)
    seed: int = 0
    flip: bool = True  # horizontal flips: labels are mirror-invariant in these scenes
    # Train on random HxW crops (None: whole images). The nets are fully convolutional, so a
    # half-size crop costs a quarter of the compute and still sees every kind of object.
    crop: tuple[int, int] | None = None
    threads: int | None = None
    # the common segmentation recipe: random rescale by 0.5-2x, then crop (padding labelled
    # ignore), flip, colour jitter; poly learning-rate decay
    scale: tuple[float, float] = (0.5, 2.0)
    jitter: float = 0.2
    schedule: str = "poly"  # or "cosine"
    device: str = "cpu"
    amp: bool = True  # mixed precision, on CUDA only
    workers: int = 0

    def check(self) -> None:
        """Refuse settings that would fail late or train nothing; raises :class:`TrainError`."""
        for name in ("epochs1", "epochs2"):
            _need(_is_int(getattr(self, name)) and getattr(self, name) >= 0, name, "an integer >= 0",
                  getattr(self, name))
        if self.epochs1 + self.epochs2 < 1:
            raise TrainError(f"epochs1 + epochs2 is {self.epochs1 + self.epochs2}: at least one epoch is needed, "
                             f"or the checkpoint would hold an untrained model")
        # a batch of one image is skipped (BatchNorm), so batch 1 would never take a step
        _need(_is_int(self.batch) and self.batch >= 2, "batch", "an integer >= 2", self.batch)
        for name in ("lr", "lr2"):
            v = getattr(self, name)
            if v is not None or name == "lr":
                _need(_is_real(v) and v > 0, name, "a finite number > 0", v)
        _need(_is_real(self.weight_decay) and self.weight_decay >= 0, "weight_decay", "a finite number >= 0",
              self.weight_decay)
        _need(_is_real(self.alpha) and 0 <= self.alpha <= 1, "alpha", "a number in [0, 1]", self.alpha)
        _need(self.exit_dropout in EXIT_DROPOUT, "exit_dropout", " or ".join(EXIT_DROPOUT), self.exit_dropout)
        _need(_is_int(self.seed), "seed", "an integer", self.seed)
        if self.crop is not None:
            ok = isinstance(self.crop, (tuple, list)) and len(self.crop) == 2 and all(
                _is_int(v) and v >= 1 for v in self.crop)
            _need(ok, "crop", "None or (height, width), positive integers", self.crop)
        if self.threads is not None:
            _need(_is_int(self.threads) and self.threads >= 1, "threads", "None or an integer >= 1", self.threads)
        ok = (isinstance(self.scale, (tuple, list)) and len(self.scale) == 2 and all(_is_real(v) for v in self.scale)
              and 0 < self.scale[0] <= self.scale[1])
        _need(ok, "scale", "(low, high) with 0 < low <= high", self.scale)
        _need(_is_real(self.jitter) and 0 <= self.jitter < 1, "jitter", "a number in [0, 1)", self.jitter)
        _need(self.schedule in SCHEDULES, "schedule", " or ".join(SCHEDULES), self.schedule)
        _need(isinstance(self.device, str) and (self.device == "cpu" or self.device.startswith("cuda")),
              "device", "cpu, cuda or cuda:N", self.device)
        _need(_is_int(self.workers) and self.workers >= 0, "workers", "an integer >= 0", self.workers)

    def augmentation(self) -> dict:
        return {"crop": tuple(self.crop) if self.crop else None, "scale": tuple(self.scale), "flip": self.flip,
                "jitter": self.jitter}


def _poly(progress: float) -> float:
    return (1 - progress) ** 0.9


def _cosine(progress: float) -> float:
    return 0.5 * (1 + math.cos(math.pi * progress))


# learning-rate factor as a function of the share of the stage's steps done
SCHEDULES = {"poly": _poly, "cosine": _cosine}


def _is_int(v) -> bool:
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def _is_real(v) -> bool:
    # bool is an int to Python; NaN and inf pass a plain "> 0"
    return isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v)


def _need(ok: bool, name: str, expected: str, got) -> None:
    if not ok:
        raise TrainError(f"{name} must be {expected}, got {got!r}")
