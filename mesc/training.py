"""MESS two-stage training and per-exit evaluation for any mesc multi-exit model.

A model is any ``nn.Module`` whose ``forward(x)`` returns the exits' logits (N x M x H x W, at
input resolution), shallow to deep: the same contract as the exporter. No attribute names are
assumed; which parameters belong to the early heads is found from the autograd graph.

Stage 1 (exit-aware pre-training, MESS Eq. 2): on batch j the final exit and ONE early exit,
``j mod (E-1)``, contribute to the loss; the other heads get no gradient that step ("exit
dropout"), so the backbone is shaped for the final exit and, in turn, for each early one.

Stage 2 (MESS Eq. 3): backbone and final exit frozen; each early head is trained with positive
filtering distillation: cross-entropy on the pixels the final exit gets right, plus
``alpha * KL(final || exit)`` towards the final exit's softmax (temperature 1).
"""

from __future__ import annotations

import math
import numbers
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from mesc import data as mdata
from mesc.errors import MescError, TrainError
from mesc.metrics import confusion_matrix, miou_from_confusion

IGNORE = mdata.IGNORE
# The exporter writes this normalisation into the manifest unless the model carries its own, so
# training must feed the network exactly the same way.
DEFAULT_NORMALIZATION = {"scale": 255.0, "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}


# ---------------------------------------------------------------------------------------------
# losses

def as_exit_list(outputs) -> list:
    """The model's exits in order, whatever sequence type it returns."""
    if isinstance(outputs, dict):
        return list(outputs.values())
    if isinstance(outputs, (list, tuple)):
        return list(outputs)
    return [outputs]


def exit_dropout_schedule(batch_index: int, num_exits: int) -> list[int]:
    """Exits that get the loss on batch ``batch_index``: one early exit round-robin, plus the final."""
    if num_exits < 1:
        raise ValueError("a model needs at least one exit")
    if num_exits == 1:
        return [0]
    return [batch_index % (num_exits - 1), num_exits - 1]


def exit_dropout_loss(outputs, target, batch_index: int, ignore_index: int = IGNORE):
    """MESS Eq. 2: sum of the per-pixel mean cross-entropies of the scheduled exits only."""
    outputs = as_exit_list(outputs)
    return sum(F.cross_entropy(outputs[k], target, ignore_index=ignore_index)
               for k in exit_dropout_schedule(batch_index, len(outputs)))


def pfd_loss(exit_logits, final_logits, target, alpha: float = 1.0, ignore_index: int = IGNORE):
    """MESS Eq. 3 for one early exit.

    ``CE(exit, target)`` averaged over the positive pixels (labelled, and the final exit's argmax
    equals the label) plus ``alpha * KL(softmax(final) || softmax(exit))`` averaged over all
    labelled pixels. The final exit is the teacher: no gradient flows into it.
    """
    final_logits = final_logits.detach()
    valid = target != ignore_index
    positive = valid & (final_logits.argmax(1) == target)
    logp_exit = F.log_softmax(exit_logits, 1)
    ce_map = F.nll_loss(logp_exit, target.masked_fill(~valid, 0), reduction="none")
    # an empty positive set contributes zero, not NaN
    ce = (ce_map * positive).sum() / positive.sum().clamp(min=1)
    logp_final = F.log_softmax(final_logits, 1)
    kl_map = (logp_final.exp() * (logp_final - logp_exit)).sum(1)
    kl = (kl_map * valid).sum() / valid.sum().clamp(min=1)
    return ce + alpha * kl


# ---------------------------------------------------------------------------------------------
# which parameters belong to whom

def early_exit_parameters(model, sample) -> tuple[list, list]:
    """Split parameters into ``(shared, early)``: ``shared`` = everything the final exit depends
    on (backbone and final head), ``early`` = parameters only early exits depend on.

    Found by asking autograd which parameters each exit's output reaches, on one sample batch,
    so it works for any architecture (skip connections, parallel branches, shared heads).
    """
    params = [p for p in model.parameters() if p.requires_grad]
    was_training = model.training
    model.eval()  # no BatchNorm statistics update from this probe
    try:
        outs = as_exit_list(model(sample))
        used = []
        for out in outs:
            grads = torch.autograd.grad(out.float().sum(), params, retain_graph=True, allow_unused=True)
            used.append({id(p) for p, g in zip(params, grads) if g is not None})
    finally:
        model.train(was_training)
    final = used[-1]
    early_ids = set().union(*used[:-1]) - final if len(used) > 1 else set()
    return [p for p in params if id(p) not in early_ids], [p for p in params if id(p) in early_ids]


def _freeze_norm_stats(model, trainable_ids: set) -> None:
    """Keep normalisation layers of the frozen part in eval mode: frozen weights with drifting
    running statistics would silently change the final exit in stage 2."""
    for m in model.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            if not any(id(p) in trainable_ids for p in m.parameters(recurse=False)):
                m.eval()


# ---------------------------------------------------------------------------------------------
# data

class SegData:
    """A data folder held in memory (synthetic sets are small): uint8 images and masks."""

    def __init__(self, path, require_masks: bool = True, split: str | None = None):
        self.path = Path(path)
        pairs = mdata.read_folder(path, require_masks=require_masks, split=split)
        loaded = [mdata.load_pair(i, m) for i, m in pairs]
        shapes = {im.shape for im, _ in loaded}
        if len(shapes) != 1:
            raise MescError(f"data folder {path}: images differ in size ({sorted(shapes)[:4]}); "
                            f"training needs one size")
        self.files = [i for i, _ in pairs]
        self.images = np.stack([im for im, _ in loaded])
        self.masks = np.stack([m for _, m in loaded]) if require_masks else None
        meta = mdata.read_meta(path)
        self.difficulty = ([e["difficulty"] for e in meta["images"]]
                           if len(meta.get("images", [])) == len(self.files) else None)

    def __len__(self):
        return len(self.images)


def normalization_of(model) -> dict:
    return getattr(model, "input_normalization", DEFAULT_NORMALIZATION)


def to_input(images: np.ndarray, norm: dict) -> torch.Tensor:
    """N x H x W x 3 uint8 -> normalised N x 3 x H x W float32, as the exported graph expects."""
    x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float() / norm["scale"]
    mean = torch.tensor(norm["mean"]).view(1, -1, 1, 1)
    std = torch.tensor(norm["std"]).view(1, -1, 1, 1)
    return (x - mean) / std


def _batches(n: int, batch: int, rng: np.random.Generator | None):
    order = rng.permutation(n) if rng is not None else np.arange(n)
    # drop a last batch of one: BatchNorm cannot train on a single image of tiny size
    for s in range(0, n, batch):
        idx = order[s: s + batch]
        if rng is None or len(idx) > 1 or n == 1:
            yield idx


def _check_crop(crop, h: int, w: int) -> None:
    if crop[0] > h or crop[1] > w:
        raise TrainError(f"crop {crop[0]}x{crop[1]} is larger than the images ({h}x{w})")


def _random_crop(images, masks, crop, rng):
    """One random window per batch (a shared offset keeps the batch one contiguous array)."""
    ch, cw = crop
    h, w = images.shape[1:3]
    _check_crop(crop, h, w)
    y, x = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
    return images[:, y: y + ch, x: x + cw], masks[:, y: y + ch, x: x + cw]


# ---------------------------------------------------------------------------------------------
# training

@dataclass
class TrainConfig:
    epochs1: int = 10
    epochs2: int = 5
    batch: int = 8
    lr: float = 2e-3
    lr2: float | None = None  # stage 2 learning rate (default: lr)
    weight_decay: float = 1e-4
    alpha: float = 1.0
    seed: int = 0
    flip: bool = True  # horizontal flips: labels are mirror-invariant in these scenes
    # Train on random HxW crops (None: whole images). The nets are fully convolutional, so a
    # half-size crop costs a quarter of the compute and still sees every kind of object.
    crop: tuple[int, int] | None = None
    threads: int | None = None

    def check(self) -> None:
        """Refuse settings that would fail late or train nothing; raises :class:`TrainError`."""
        for name in ("epochs1", "epochs2"):
            _need(_is_int(getattr(self, name)) and getattr(self, name) >= 0, name, "an integer >= 0",
                  getattr(self, name))
        if self.epochs1 + self.epochs2 < 1:
            raise TrainError(f"epochs1 + epochs2 is {self.epochs1 + self.epochs2}: at least one epoch is needed, "
                             f"or the checkpoint would hold an untrained model")
        # _batches drops a batch of one image (BatchNorm), so batch 1 would never take a step
        _need(_is_int(self.batch) and self.batch >= 2, "batch", "an integer >= 2", self.batch)
        for name in ("lr", "lr2"):
            v = getattr(self, name)
            if v is not None or name == "lr":
                _need(_is_real(v) and v > 0, name, "a finite number > 0", v)
        _need(_is_real(self.weight_decay) and self.weight_decay >= 0, "weight_decay", "a finite number >= 0",
              self.weight_decay)
        _need(_is_real(self.alpha) and 0 <= self.alpha <= 1, "alpha", "a number in [0, 1]", self.alpha)
        _need(_is_int(self.seed), "seed", "an integer", self.seed)
        if self.crop is not None:
            ok = isinstance(self.crop, (tuple, list)) and len(self.crop) == 2 and all(
                _is_int(v) and v >= 1 for v in self.crop)
            _need(ok, "crop", "None or (height, width), positive integers", self.crop)
        if self.threads is not None:
            _need(_is_int(self.threads) and self.threads >= 1, "threads", "None or an integer >= 1", self.threads)


def _is_int(v) -> bool:
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def _is_real(v) -> bool:
    # bool is an int to Python; NaN and inf pass a plain "> 0"
    return isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v)


def _need(ok: bool, name: str, expected: str, got) -> None:
    if not ok:
        raise TrainError(f"{name} must be {expected}, got {got!r}")


def check_output(out, force: bool = False, inputs=()) -> None:
    """Refuse, before training, a checkpoint path that exists (unless ``force``), is a folder,
    overlaps an input, or lies where nothing can be written: hours of training must not end in
    a failed save."""
    from mesc.outputs import check_file_output

    check_file_output(out, "output", force, inputs=inputs, error=TrainError)


def _run_stage(model, data, params, loss_fn, epochs, cfg, lr, rng, desc, progress, log):
    """One optimisation stage over ``params``; returns the mean loss of each epoch."""
    from mesc.progress import bar as progress_bar

    if epochs <= 0 or not params:
        return []
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=cfg.weight_decay)
    steps_per_epoch = max(1, sum(1 for _ in _batches(len(data), cfg.batch, rng=np.random.default_rng(0))))
    total = epochs * steps_per_epoch
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + math.cos(math.pi * min(s, total) / total)))
    norm = normalization_of(model)
    step, history = 0, []
    bar = progress_bar(total, desc, "batch", progress)
    for epoch in range(epochs):
        losses = []
        for idx in _batches(len(data), cfg.batch, rng):
            images, masks = data.images[idx], data.masks[idx]
            if cfg.crop:
                images, masks = _random_crop(images, masks, cfg.crop, rng)
            if cfg.flip:
                flip = rng.random(len(idx)) < 0.5
                images = np.where(flip[:, None, None, None], images[:, :, ::-1], images)
                masks = np.where(flip[:, None, None], masks[:, :, ::-1], masks)
            x = to_input(images, norm)
            y = torch.from_numpy(masks.astype(np.int64))
            loss = loss_fn(as_exit_list(model(x)), y, step)
            if not torch.isfinite(loss):
                bar.close()
                raise TrainError(f"{desc}: the loss is {loss.item()} at epoch {epoch + 1}/{epochs}, step "
                                 f"{step + 1}/{total}; training stopped and nothing was saved (try a lower lr)")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            step += 1
            losses.append(loss.item())
            bar.update(1)
            bar.set_postfix(loss=f"{np.mean(losses[-20:]):.3f}")
        history.append(float(np.mean(losses)))
        if log:
            log(f"{desc} epoch {epoch + 1}/{epochs}: loss {history[-1]:.4f}")
    bar.close()
    return history


def train(model, data_dir, out=None, config: TrainConfig | None = None, val_dir=None,
          progress: bool = True, log=print, force: bool = False, split: str | None = None,
          val_split: str | None = None) -> dict:
    """Train ``model`` in place with the two MESS stages; save its state_dict to ``out``.

    The settings, the data and ``out`` (an existing file only with ``force``) are checked
    before any training; a loss that turns NaN or infinite stops it with a :class:`TrainError`
    and nothing is saved. Returns a summary: loss per epoch of each stage, seconds, and the
    validation per-exit mIoU when ``val_dir`` is given.
    """
    cfg = config or TrainConfig()
    cfg.check()
    data = SegData(data_dir, split=split)
    if out is not None:
        check_output(out, force, inputs=[("data", data_dir), ("val", val_dir)])
    if cfg.crop:
        _check_crop(cfg.crop, *data.images.shape[1:3])
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    norm = normalization_of(model)
    model.train()

    t0 = time.perf_counter()
    probe = to_input(data.images[:2], norm)
    model.eval()
    with torch.no_grad():
        num_exits = len(as_exit_list(model(probe)))
    shared, early = early_exit_parameters(model, probe)
    if cfg.epochs1 == 0 and (num_exits == 1 or not early):
        raise TrainError("epochs1 is 0 and the model has no early-exit heads for stage 2 to train: "
                         "nothing would be trained")
    if log:
        log(f"{len(data)} images, {num_exits} exits; {sum(p.numel() for p in shared)} backbone+final "
            f"parameters, {sum(p.numel() for p in early)} early-exit parameters")

    hist1 = _run_stage(model, data, shared + early,
                       lambda outs, y, j: exit_dropout_loss(outs, y, j),
                       cfg.epochs1, cfg, cfg.lr, rng, "stage 1 (exit dropout)", progress, log)

    # stage 2: only the early heads learn; the final exit is the (fixed) teacher
    for p in shared:
        p.requires_grad_(False)
    model.train()
    _freeze_norm_stats(model, {id(p) for p in early})

    def pfd_all(outs, y, j):
        return sum(pfd_loss(o, outs[-1], y, cfg.alpha) for o in outs[:-1])

    try:
        hist2 = _run_stage(model, data, early, pfd_all, cfg.epochs2 if num_exits > 1 else 0, cfg,
                           cfg.lr2 or cfg.lr, rng, "stage 2 (PFD)", progress, log)
    finally:
        for p in shared:
            p.requires_grad_(True)
    model.eval()
    summary = {"config": asdict(cfg), "images": len(data), "exits": num_exits,
               "stage1_loss": hist1, "stage2_loss": hist2,
               "seconds": round(time.perf_counter() - t0, 1)}
    if out is not None:
        save_checkpoint(model, out)
        summary["checkpoint"] = str(out)
    if val_dir is not None:
        result = evaluate(model, SegData(val_dir, split=val_split))
        summary["val_miou"] = result["miou"]
        if log:
            log(format_miou_table(result["miou"]))
            if result["difficulty"] is not None:
                log("images with pixel accuracy >= 0.9, by difficulty:\n" + difficulty_table(result))
    return summary


def save_checkpoint(model, path) -> None:
    """float32 state_dict, written through a temporary file so a crash leaves no half file."""
    from mesc.staging import atomic_file

    state = {k: (v.float() if v.is_floating_point() else v).contiguous().clone()
             for k, v in model.state_dict().items()}
    with atomic_file(path) as tmp:
        torch.save(state, tmp)


# ---------------------------------------------------------------------------------------------
# evaluation

@torch.no_grad()
def predict_exits(model, images: np.ndarray, batch: int = 8) -> list[np.ndarray]:
    """Per exit, the argmax labels (N x H x W uint8) for N x H x W x 3 uint8 images."""
    model.eval()
    norm = normalization_of(model)
    per_exit = None
    for s in range(0, len(images), batch):
        outs = as_exit_list(model(to_input(images[s: s + batch], norm)))
        labels = [o.argmax(1).to(torch.uint8).numpy() for o in outs]
        per_exit = [[lab] for lab in labels] if per_exit is None else [a + [b] for a, b in zip(per_exit, labels)]
    return [np.concatenate(chunks) for chunks in per_exit]


def evaluate(model, data_dir, batch: int = 8, progress: bool = False) -> dict:
    """Per-exit mIoU over a labelled folder, plus each image's pixel accuracy per exit.

    Returns ``{"miou": [..per exit..], "pixel_acc": E x N array, "difficulty": [..] or None,
    "files": [...]}``.
    """
    data = SegData(data_dir) if not isinstance(data_dir, SegData) else data_dir
    preds = predict_exits(model, data.images, batch)
    labelled = data.masks != IGNORE
    num_classes = int(max(data.masks[labelled].max(initial=0),
                          max(int(p.max(initial=0)) for p in preds)) + 1)
    miou = [miou_from_confusion(confusion_matrix(p, data.masks, num_classes, IGNORE)) for p in preds]
    hits = [((p == data.masks) & labelled).sum((1, 2)) / np.maximum(labelled.sum((1, 2)), 1) for p in preds]
    return {"miou": miou, "pixel_acc": np.stack(hits), "difficulty": data.difficulty,
            "files": [str(f) for f in data.files]}


def evaluate_miou(model, data_dir, progress: bool = False, log=print) -> list[float]:
    """Per-exit mIoU on a labelled folder, printed as a table when ``log`` is given."""
    miou = evaluate(model, data_dir, progress=progress)["miou"]
    if log:
        log(format_miou_table(miou))
    return miou


def format_miou_table(miou) -> str:
    lines = ["exit   mIoU", "----  ------"]
    lines += [f"{k:4d}  {100 * m:5.1f}%" for k, m in enumerate(miou)]
    return "\n".join(lines)


def difficulty_table(result: dict, bins=(0.0, 0.25, 0.5, 0.75, 1.0), threshold: float = 0.9) -> str:
    """Share of images each exit gets right (pixel accuracy >= ``threshold``) per difficulty bin:
    the evidence that easy inputs can leave early."""
    if result["difficulty"] is None:
        raise MescError("the data folder has no meta.json with per-image difficulty")
    d = np.asarray(result["difficulty"])
    ok = result["pixel_acc"] >= threshold
    head = "difficulty    n  " + "  ".join(f"exit{k}" for k in range(len(ok)))
    lines = [head, "-" * len(head)]
    for lo, hi in zip(bins[:-1], bins[1:]):
        sel = (d >= lo) & ((d < hi) if hi < bins[-1] else (d <= hi))
        if sel.any():
            lines.append(f"{lo:.2f}-{hi:.2f}  {sel.sum():4d}  "
                         + "  ".join(f"{100 * ok[k, sel].mean():4.0f}%" for k in range(len(ok))))
    return "\n".join(lines)
