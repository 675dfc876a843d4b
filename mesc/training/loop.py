"""MESS two-stage training and per-exit evaluation for any mesc multi-exit model.

A model is any ``nn.Module`` whose ``forward(x)`` returns the exits' logits (N x M x H x W, at
input resolution), shallow to deep: the same contract as the exporter. An exit point may return
a list of candidate heads' logits instead of one tensor; training and evaluation flatten them
(point by point, candidates in order). No attribute names are assumed; which parameters belong
to the early heads is found from the autograd graph.

Stage 1 (exit-aware pre-training, MESS Eq. 2, "exit dropout"): on each batch only some exits
contribute to the loss, so the backbone is shaped for the final exit and, in turn, for each early
one. ``exit_dropout="prose"`` (default): the final exit and ONE early exit, ``j mod (E-1)`` on
batch j; ``"eq2"``: the final exit and every early exit kept independently with probability
``EQ2_KEEP`` (drawn from the seed and the step, so every process and a resumed run draw alike).

Stage 2 (MESS Eq. 3): backbone and final exit frozen; every early head (every candidate) is
trained with positive filtering distillation against the final exit, per pixel
``alpha * 1[argmax final == y] * CE(exit, y) + (1 - alpha) * KL(final || exit)``, averaged over
the labelled pixels (temperature 1).
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

from mesc.datasets import read_folder
from mesc.datasets.images import load_pair
from mesc.datasets.labels import IGNORE
from mesc.datasets.synthetic import read_meta
from mesc.errors import MescError, TrainError
from mesc.evaluation.metrics import confusion_matrix, miou_from_confusion

# The exporter writes this normalisation into the manifest unless the model carries its own, so
# training must feed the network exactly the same way.
DEFAULT_NORMALIZATION = {"scale": 255.0, "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}


# ---------------------------------------------------------------------------------------------
# losses

def exit_points(outputs) -> list:
    """The model's exit points in order, whatever sequence type it returns; an entry is one
    tensor, or a list of candidate heads' tensors."""
    if isinstance(outputs, dict):
        return list(outputs.values())
    if isinstance(outputs, (list, tuple)):
        return list(outputs)
    return [outputs]


def as_exit_list(outputs) -> list:
    """Every head's logits in flattened order: point by point, candidates in order."""
    flat = []
    for entry in exit_points(outputs):
        flat += list(entry) if isinstance(entry, (list, tuple)) else [entry]
    return flat


EXIT_DROPOUT = ("prose", "eq2")
# eq2: the chance that an early exit takes part in a batch's loss
EQ2_KEEP = 0.5


def exit_dropout_schedule(batch_index: int, num_exits: int, mode: str = "prose", seed: int = 0) -> list[int]:
    """Exits that get the loss on batch ``batch_index``, final exit last. ``prose``: one early
    exit round-robin, plus the final. ``eq2``: each early exit with probability ``EQ2_KEEP``
    (a draw that depends only on ``seed`` and ``batch_index``), plus the final."""
    if num_exits < 1:
        raise ValueError("a model needs at least one exit")
    if mode not in EXIT_DROPOUT:
        raise ValueError(f"exit dropout must be one of {EXIT_DROPOUT}, got {mode!r}")
    if num_exits == 1:
        return [0]
    if mode == "prose":
        return [batch_index % (num_exits - 1), num_exits - 1]
    gen = torch.Generator().manual_seed(seed * 1_000_003 + batch_index)
    keep = torch.rand(num_exits - 1, generator=gen) < EQ2_KEEP
    return [k for k in range(num_exits - 1) if keep[k]] + [num_exits - 1]


def batch_count(mask):
    """How many pixels of ``mask`` the whole batch holds, per process: its own count, or under
    torchrun the sum over every process's share divided by the world size. Losses averaged over
    it give, once DistributedDataParallel averages the gradients, exactly the single-process
    gradient of the whole batch (a mean of per-process means would weigh the processes' pixels
    unequally wherever their counts differ: padding, or PFD's positive pixels)."""
    count = mask.sum().to(torch.float32)
    rank, world = _distributed()
    if world > 1:
        count = count.detach().clone()
        torch.distributed.all_reduce(count)
        count = count / world
    return count.clamp(min=1)


def exit_losses(outputs, target, ignore_index: int = IGNORE) -> list:
    """Each exit's cross-entropy averaged over the batch's labelled pixels (0, not NaN, for a
    crop that holds only padding)."""
    count = batch_count(target != ignore_index)
    return [F.cross_entropy(o, target, ignore_index=ignore_index, reduction="sum") / count
            for o in as_exit_list(outputs)]


def exit_dropout_loss(outputs, target, batch_index: int, ignore_index: int = IGNORE, mode: str = "prose",
                      seed: int = 0):
    """MESS Eq. 2: sum of the per-pixel mean cross-entropies of the scheduled exits only."""
    outputs = as_exit_list(outputs)
    return sum(exit_losses([outputs[k] for k in exit_dropout_schedule(batch_index, len(outputs), mode, seed)],
                           target, ignore_index))


# MESS Eq. 3's weight of the positive-filtered cross-entropy against the distillation term
DEFAULT_ALPHA = 0.5


def pfd_loss(exit_logits, final_logits, target, alpha: float = DEFAULT_ALPHA, ignore_index: int = IGNORE):
    """MESS Eq. 3 for one early exit: per pixel

        alpha * 1[argmax final == y] * CE(exit, y) + (1 - alpha) * KL(softmax(final) || softmax(exit))

    averaged over the batch's labelled pixels (both terms over the same count, so ``alpha``
    weighs them as the equation does; pixels the final exit gets wrong add only their KL).
    The final exit is the teacher: no gradient flows into it.
    """
    final_logits = final_logits.detach()
    valid = target != ignore_index
    positive = valid & (final_logits.argmax(1) == target)
    logp_exit = F.log_softmax(exit_logits, 1)
    ce_map = F.nll_loss(logp_exit, target.masked_fill(~valid, 0), reduction="none")
    logp_final = F.log_softmax(final_logits, 1)
    kl_map = (logp_final.exp() * (logp_final - logp_exit)).sum(1)
    per_pixel = alpha * ce_map * positive + (1 - alpha) * kl_map * valid
    # a crop of padding alone contributes zero, not NaN
    return per_pixel.sum() / batch_count(valid)


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
    alpha: float = DEFAULT_ALPHA  # MESS Eq. 3: 1 = positive-filtered CE alone, 0 = distillation alone
    exit_dropout: str = "prose"  # stage 1's schedule: "prose" or "eq2" (see exit_dropout_schedule)
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


def check_output(out, force: bool = False, inputs=()) -> None:
    """Refuse, before training, a checkpoint path that exists (unless ``force``), is a folder,
    overlaps an input, or lies where nothing can be written: hours of training must not end in
    a failed save."""
    from mesc.outputs import check_file_output

    check_file_output(out, "output", force, inputs=inputs, error=TrainError)


def _distributed() -> tuple[int, int]:
    """``(rank, world size)`` of a torchrun process group, ``(0, 1)`` without one."""
    dist = torch.distributed
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _device(cfg: TrainConfig, world: int) -> torch.device:
    import os

    name = cfg.device
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise TrainError(f"--device {name}: CUDA is not available to this torch ({torch.__version__})")
        if name == "cuda" and world > 1:
            name = f"cuda:{os.environ.get('LOCAL_RANK', 0)}"  # one GPU per torchrun process
    return torch.device(name)


@dataclass
class _Run:
    """What both stages share: data, device, process group and where results go."""
    cfg: TrainConfig
    settings: dict  # cfg and the splits, as the training checkpoint records them
    dataset: object
    loader: object
    sampler: object
    device: torch.device
    rank: int
    world: int
    val: object
    checkpoint: object
    log_file: object
    plot: object
    log: object
    progress: bool
    records: list
    resume: dict | None

    @property
    def amp(self) -> bool:
        return self.cfg.amp and self.device.type == "cuda"

    @property
    def steps_per_epoch(self) -> int:
        # a last batch of one is skipped (BatchNorm cannot train on a single image)
        n = len(self.loader)
        return max(1, n - (1 if len(self.sampler) % self.loader.batch_size == 1 and len(self.dataset) > 1 else 0))


def _run_stage(run: _Run, model, stage: int, params, loss_fn, epochs, lr, train_mode, desc):
    """One optimisation stage over ``params``, from the resumed epoch on; each epoch's record
    goes to ``run.records``."""
    from mesc import training_log, training_state
    from mesc.progress import bar as progress_bar

    cfg = run.cfg
    start = 0
    if run.resume is not None:
        start = run.resume["epoch"] if run.resume["stage"] == stage else (epochs if run.resume["stage"] > stage else 0)
    if epochs <= 0 or not params or start >= epochs:
        return
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=cfg.weight_decay)
    total = epochs * run.steps_per_epoch
    factor = SCHEDULES[cfg.schedule]
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: factor(min(s, total) / total))
    scaler = torch.amp.GradScaler("cuda", enabled=run.amp)
    if run.resume is not None and run.resume["stage"] == stage:
        opt.load_state_dict(run.resume["optimizer"])
        sched.load_state_dict(run.resume["scheduler"])
        if run.resume["scaler"]:
            scaler.load_state_dict(run.resume["scaler"])
    net = model
    if run.world > 1:
        # stage 1 leaves the unscheduled heads out of each step's loss
        net = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[run.device] if run.device.type == "cuda" else None, find_unused_parameters=True)
    norm = normalization_of(model)
    step = start * run.steps_per_epoch
    bar = progress_bar((epochs - start) * run.steps_per_epoch, desc, "batch", run.progress and run.rank == 0)
    for epoch in range(start, epochs):
        t0 = time.perf_counter()
        run.dataset.stage, run.dataset.epoch = stage, epoch
        run.sampler.set_epoch(epoch if stage == 1 else cfg.epochs1 + epoch)
        losses, per_exit, seen = [], [], 0
        for images, masks in run.loader:
            if len(images) == 1 and len(run.dataset) > 1:
                continue
            x = to_input(images.to(run.device, non_blocking=True), norm)
            y = masks.to(run.device, non_blocking=True).long()
            with torch.autocast(run.device.type, dtype=torch.float16, enabled=run.amp):
                outs = as_exit_list(net(x))
            _check_labels(masks, outs[-1].shape[1], desc, epoch, epochs)  # on the host copy: no device sync
            loss, terms = loss_fn([o.float() for o in outs], y, step)
            if not torch.isfinite(loss):
                bar.close()
                raise TrainError(f"{desc}: the loss is {loss.item()} at epoch {epoch + 1}/{epochs}, step "
                                 f"{step + 1}/{total}; training stopped and nothing was saved (try a lower lr)")
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
            sched.step()
            step += 1
            seen += len(images) * run.world
            losses.append(loss.item())
            per_exit.append([float(t) for t in terms])
            bar.update(1)
            bar.set_postfix(loss=f"{np.mean(losses[-20:]):.3f}")
        seconds = time.perf_counter() - t0
        record = {"stage": stage, "epoch": epoch + 1, "epochs": epochs, "loss": float(np.mean(losses)),
                  "loss_per_exit": [float(v) for v in np.mean(per_exit, axis=0)], "lr": sched.get_last_lr()[0],
                  "images_per_s": round(seen / seconds, 2), "seconds": round(seconds, 2)}
        if run.val is not None and run.rank == 0:
            record["val_miou"] = evaluate(model, run.val)["miou"]
            train_mode()
        run.records.append(record)
        if run.rank == 0:
            if run.checkpoint is not None:
                training_state.save(run.checkpoint, model, opt, sched, scaler if run.amp else None, stage,
                                    epoch + 1, run.settings, run.records)
            if run.log_file is not None:
                training_log.append(run.log_file, record)
                if run.plot is not None:
                    training_log.plot(run.records, run.plot, log=run.log)
            if run.log:
                miou = record.get("val_miou")
                run.log(f"{desc} epoch {epoch + 1}/{epochs}: loss {record['loss']:.4f} (per exit "
                        + " / ".join(f"{v:.3f}" for v in record["loss_per_exit"]) + ")"
                        + (", val mIoU " + " / ".join(f"{100 * m:.1f}%" for m in miou) if miou else "")
                        + f", {record['images_per_s']} images/s")
    bar.close()


def _check_labels(target, num_classes: int, desc: str, epoch: int, epochs: int) -> None:
    """A mask id the model has no class for would fail deep in the loss (or, on CUDA, as a
    device-side assert): name the mismatch instead."""
    labelled = target[target != IGNORE]
    if labelled.numel() and int(labelled.max()) >= num_classes:
        raise TrainError(f"{desc}: a mask holds class id {int(labelled.max())} at epoch {epoch + 1}/{epochs} but the "
                         f"model predicts {num_classes} classes (ids 0..{num_classes - 1}; {IGNORE} marks ignored "
                         f"pixels): train a model with as many classes as the data set has")


def train(model, data_dir, out=None, config: TrainConfig | None = None, val_dir=None,
          progress: bool = True, log=print, force: bool = False, checkpoint=None, resume=None,
          log_file=None, plot=None, backbone_weights=None, backbone_layout: str = "auto",
          split: str | None = None, val_split: str | None = None, init=None) -> dict:
    """Train ``model`` in place with the two MESS stages; save its state_dict to ``out``.

    The settings, the data and ``out`` (an existing file only with ``force``) are checked
    before any training; a loss that turns NaN or infinite stops it with a :class:`TrainError`
    and nothing is saved. After every epoch the full training state goes to ``checkpoint``
    (which ``resume`` continues from), a JSON line to ``log_file`` and the curves to ``plot``.
    Under torchrun (a process group initialised, see :mod:`mesc.training_dist`) each process
    trains on its share of every batch and rank 0 alone writes. Returns a summary: loss per
    epoch of each stage, seconds, and the validation per-exit mIoU when ``val_dir`` is given.
    ``backbone_weights``: ImageNet weights to start the backbone from (see
    :func:`mesc.models.pretrained.load_backbone_weights`). ``split``/``val_split`` pick a split of
    a dataset in its published layout (:func:`mesc.datasets.read_folder`). ``resume`` refuses a
    checkpoint written with other settings or splits (threads, workers, device and mixed
    precision aside) and restores every weight, so ``backbone_weights`` is not loaded again.
    ``init``: a stage-1 checkpoint whose backbone and final head are loaded before training,
    its early heads skipped (MESS stage 2 with new candidate heads: ``epochs1=0``); what was
    loaded, skipped and left missing is logged and returned as ``summary["init"]``
    (:func:`mesc.models.registry.load_backbone_only`).
    """
    from mesc import training_data, training_state

    cfg = config or TrainConfig()
    cfg.check()
    rank, world = _distributed()
    if cfg.batch % world:
        raise TrainError(f"batch {cfg.batch} does not split evenly over {world} processes")
    state = training_state.load(resume) if resume is not None else None
    # what a resumed run must repeat: the recipe and the data it reads
    settings = {**asdict(cfg), "split": split, "val_split": val_split}
    if init is not None and backbone_weights is not None:
        raise TrainError("init already sets the backbone: give it or backbone_weights, not both")
    init_report = None
    if state is not None:
        training_state.check_settings(resume, state, settings)
    elif init is not None:
        from mesc.models.registry import load_backbone_only

        init_report = load_backbone_only(getattr(model, "module", model), init)
        if log and rank == 0:
            log(init_report.summary())
    elif backbone_weights is not None:
        # a resumed run's checkpoint already holds every weight, these included
        from mesc.models.pretrained import load_backbone_weights

        report = load_backbone_weights(model, backbone_weights, backbone_layout)
        if log and rank == 0:
            log(report.summary())
    dataset = training_data.SegStream(data_dir, aug=cfg.augmentation(), seed=cfg.seed, split=split)
    if out is not None:
        check_output(out, force, inputs=[("data", data_dir), ("val", val_dir), ("init", init)])
    for extra in (checkpoint, log_file, plot):
        if extra is not None and rank == 0:
            check_output(extra, True, inputs=[("data", data_dir), ("val", val_dir), ("init", init)])
    if cfg.crop:
        training_data.check_crop(cfg.crop, *dataset.first_size())
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    device = _device(cfg, world)
    if state is not None:
        getattr(model, "module", model).load_state_dict(state["model"])
    model.to(device)
    if world > 1 and device.type == "cuda":
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    norm = normalization_of(model)
    loader, sampler = training_data.make_loader(dataset, cfg.batch, cfg.workers, seed=cfg.seed, rank=rank,
                                                world=world)
    val = SegData(val_dir, split=val_split) if val_dir is not None else None
    records = [r for r in state["history"]] if state is not None else []
    if log_file is not None and state is None and rank == 0:
        Path(log_file).unlink(missing_ok=True)  # a fresh run starts a fresh log
    run = _Run(cfg, settings, dataset, loader, sampler, device, rank, world, val, checkpoint, log_file, plot, log,
               progress, records, state)

    t0 = time.perf_counter()
    probe = to_input(torch.stack([dataset[i][0] for i in range(min(2, len(dataset)))]).to(device), norm)
    model.eval()
    with torch.no_grad():
        num_exits = len(as_exit_list(model(probe)))
    shared, early = early_exit_parameters(model, probe)
    if cfg.epochs1 == 0 and (num_exits == 1 or not early):
        raise TrainError("epochs1 is 0 and the model has no early-exit heads for stage 2 to train: "
                         "nothing would be trained")
    if log and rank == 0:
        log(f"{len(dataset)} images, {num_exits} exits; {sum(p.numel() for p in shared)} backbone+final "
            f"parameters, {sum(p.numel() for p in early)} early-exit parameters; {device}"
            + (f", {world} processes" if world > 1 else "")
            + (f"; resuming after stage {state['stage']} epoch {state['epoch']}" if state else ""))

    model.train()
    _run_stage(run, model, 1, shared + early, lambda outs, y, j: _stage1_loss(outs, y, j, cfg), cfg.epochs1,
               cfg.lr, model.train, "stage 1 (exit dropout)")

    # stage 2: only the early heads learn; the final exit is the (fixed) teacher
    for p in shared:
        p.requires_grad_(False)
    early_ids = {id(p) for p in early}

    def stage2_mode():
        model.train()
        _freeze_norm_stats(model, early_ids)

    stage2_mode()

    def pfd_all(outs, y, j):
        terms = [pfd_loss(o, outs[-1], y, cfg.alpha) for o in outs[:-1]]
        return sum(terms), [t.detach() for t in terms]

    try:
        _run_stage(run, model, 2, early, pfd_all, cfg.epochs2 if num_exits > 1 else 0, cfg.lr2 or cfg.lr,
                   stage2_mode, "stage 2 (PFD)")
    finally:
        for p in shared:
            p.requires_grad_(True)
    model.eval()
    summary = {"config": asdict(cfg), "images": len(dataset), "exits": num_exits,
               "stage1_loss": [r["loss"] for r in records if r["stage"] == 1],
               "stage2_loss": [r["loss"] for r in records if r["stage"] == 2],
               "history": records, "seconds": round(time.perf_counter() - t0, 1),
               "init": init_report.to_dict() if init_report is not None else None}
    if out is not None and rank == 0:
        save_checkpoint(model, out)
        summary["checkpoint"] = str(out)
    if val is not None and rank == 0:
        result = evaluate(model, val)
        summary["val_miou"] = result["miou"]
        summary["val_exits"] = result["names"]
        if log:
            log(format_miou_table(result["miou"], result["names"]))
            if result["difficulty"] is not None:
                log("images with pixel accuracy >= 0.9, by difficulty:\n" + difficulty_table(result))
    return summary


def _stage1_loss(outs, y, step, cfg: TrainConfig):
    terms = exit_losses(outs, y)
    scheduled = exit_dropout_schedule(step, len(outs), cfg.exit_dropout, cfg.seed)
    return sum(terms[k] for k in scheduled), [t.detach() for t in terms]


def save_checkpoint(model, path) -> None:
    """float32 state_dict, written through a temporary file so a crash leaves no half file."""
    from mesc.staging import atomic_file
    from mesc.training_state import plain_state

    with atomic_file(path) as tmp:
        torch.save(plain_state(model), tmp)


# ---------------------------------------------------------------------------------------------
# evaluation

@torch.no_grad()
def predict_exits(model, images: np.ndarray, batch: int = 8, names: list | None = None) -> list[np.ndarray]:
    """Per head (candidates flattened), the argmax labels (N x H x W uint8) for N x H x W x 3
    uint8 images. ``names``, a list, receives the heads' names (``exit{p}``, ``exit{p}c{j}``)."""
    from mesc.models.candidates import exit_names

    model.eval()
    norm = normalization_of(model)
    per_exit = None
    device = next(model.parameters()).device
    for s in range(0, len(images), batch):
        points = exit_points(model(to_input(images[s: s + batch], norm).to(device)))
        if names is not None and per_exit is None:
            names += exit_names(points)
        labels = [o.argmax(1).to(torch.uint8).cpu().numpy() for o in as_exit_list(points)]
        per_exit = [[lab] for lab in labels] if per_exit is None else [a + [b] for a, b in zip(per_exit, labels)]
    return [np.concatenate(chunks) for chunks in per_exit]


def evaluate(model, data_dir, batch: int = 8, progress: bool = False) -> dict:
    """Per-exit mIoU over a labelled folder, plus each image's pixel accuracy per exit.

    Returns ``{"miou": [..per head..], "names": [..per head..], "pixel_acc": E x N array,
    "difficulty": [..] or None, "files": [...]}``; a point with candidate heads has one entry
    per candidate (``exit{p}c{j}``).
    """
    data = SegData(data_dir) if not isinstance(data_dir, SegData) else data_dir
    names: list = []
    preds = predict_exits(model, data.images, batch, names)
    labelled = data.masks != IGNORE
    num_classes = int(max(data.masks[labelled].max(initial=0),
                          max(int(p.max(initial=0)) for p in preds)) + 1)
    miou = [miou_from_confusion(confusion_matrix(p, data.masks, num_classes, IGNORE)) for p in preds]
    hits = [((p == data.masks) & labelled).sum((1, 2)) / np.maximum(labelled.sum((1, 2)), 1) for p in preds]
    return {"miou": miou, "names": names, "pixel_acc": np.stack(hits), "difficulty": data.difficulty,
            "files": [str(f) for f in data.files]}


def evaluate_miou(model, data_dir, progress: bool = False, log=print) -> list[float]:
    """Per-exit mIoU on a labelled folder, printed as a table when ``log`` is given."""
    result = evaluate(model, data_dir, progress=progress)
    if log:
        log(format_miou_table(result["miou"], result["names"]))
    return result["miou"]


def format_miou_table(miou, names=None) -> str:
    names = names or [f"exit{k}" for k in range(len(miou))]
    width = max(6, *(len(n) for n in names))
    lines = [f"{'exit':<{width}}   mIoU", f"{'-' * width}  ------"]
    lines += [f"{n:<{width}}  {100 * m:5.1f}%" for n, m in zip(names, miou)]
    return "\n".join(lines)


def difficulty_table(result: dict, bins=(0.0, 0.25, 0.5, 0.75, 1.0), threshold: float = 0.9) -> str:
    """Share of images each exit gets right (pixel accuracy >= ``threshold``) per difficulty bin:
    the evidence that easy inputs can leave early."""
    if result["difficulty"] is None:
        raise MescError("the data folder has no meta.json with per-image difficulty")
    d = np.asarray(result["difficulty"])
    ok = result["pixel_acc"] >= threshold
    names = result.get("names") or [f"exit{k}" for k in range(len(ok))]
    head = "difficulty    n  " + "  ".join(f"{n:>5}" for n in names)
    lines = [head, "-" * len(head)]
    for lo, hi in zip(bins[:-1], bins[1:]):
        sel = (d >= lo) & ((d < hi) if hi < bins[-1] else (d <= hi))
        if sel.any():
            lines.append(f"{lo:.2f}-{hi:.2f}  {sel.sum():4d}  "
                         + "  ".join(f"{100 * ok[k, sel].mean():{max(5, len(n)) - 1}.0f}%"
                                     for k, n in enumerate(names)))
    return "\n".join(lines)
