"""The MESS two-stage training loop (see :mod:`mesc.training` for the recipe): stage 1 trains
everything with exit dropout, stage 2 only the early heads with positive filtering distillation
against the frozen final exit. Checked before it starts, checkpointed after every epoch, and
split over torchrun's processes when a process group is up (:mod:`mesc.training.dist`)."""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass

import numpy as np
import torch

from mesc.datasets.labels import IGNORE
from mesc.errors import TrainError
from mesc.package.outputs import check_file_output, check_file_outputs, resolved
from mesc.progress import bar as progress_bar
from mesc.package.staging import atomic_file
from mesc.training import data as training_data
from mesc.training import log as training_log
from mesc.training import state as training_state
from mesc.training.config import SCHEDULES, TrainConfig
from mesc.training.data import SegData, normalization_of, to_input
from mesc.training.exits import as_exit_list, early_exit_parameters, freeze_norm_stats
from mesc.training.losses import exit_dropout_schedule, exit_losses, pfd_loss
from mesc.training.process_group import rank_and_world
from mesc.training.validation import difficulty_table, evaluate, format_miou_table


def check_output(out, force: bool = False, inputs=()) -> None:
    """Refuse, before training, a checkpoint path that exists (unless ``force``), is a folder,
    overlaps an input, or lies where nothing can be written: hours of training must not end in
    a failed save."""
    check_file_output(out, "output", force, inputs=inputs, error=TrainError)


def _is_training_log(path) -> bool:
    try:
        records = training_log.read(path)
    except (OSError, UnicodeDecodeError, ValueError):
        return False
    return bool(records) and all(isinstance(r, dict) and {"stage", "epoch", "loss"} <= r.keys() for r in records)


def check_outputs(out=None, checkpoint=None, log_file=None, plot=None, force: bool = False, inputs=(),
                  resume=None) -> None:
    """Every file a training run writes, by the rules every command follows
    (:mod:`mesc.package.outputs`), before any training: none is, contains or lies inside what the
    run reads (``inputs``: ``(label, path)`` pairs such as the data folders, the model file,
    ``--weights``, ``--backbone-weights``, ``--init``, ``--resume``), none replaces an existing
    file without ``force``, and no two are the same file; ``force`` never makes an input an output.

    A resumed run continues its own files: ``checkpoint`` may be the ``resume`` file (read once
    at the start, then replaced atomically after every epoch), and an existing ``log_file`` that
    is a mesc training log is continued (and its curves ``plot`` redrawn) without ``force``."""
    inputs = [(label, path) for label, path in inputs if path is not None]
    continued = {}
    if resume is not None:
        inputs.append(("--resume", resume))
        if checkpoint is not None and resolved(checkpoint) == resolved(resume):
            continued["--checkpoint"] = "--resume"  # the one input a run may replace: read once, at the start
        if log_file is not None and _is_training_log(log_file):
            continued["--log"] = continued["--log's curves"] = None
    check_file_outputs([("-o", out), ("--checkpoint", checkpoint), ("--log", log_file), ("--log's curves", plot)],
                       force, inputs, continued, error=TrainError)


def _device(cfg: TrainConfig, world: int) -> torch.device:
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
    fresh_log: bool = False  # the next record replaces log_file (a fresh run), else it is appended

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
                training_log.append(run.log_file, record, fresh=run.fresh_log)
                run.fresh_log = False
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
          split: str | None = None, val_split: str | None = None, init=None, inputs=()) -> dict:
    """Train ``model`` in place with the two MESS stages; save its state_dict to ``out``.

    The settings, the data and ``out`` (an existing file only with ``force``) are checked
    before any training; a loss that turns NaN or infinite stops it with a :class:`TrainError`
    and nothing is saved. After every epoch the full training state goes to ``checkpoint``
    (which ``resume`` continues from), a JSON line to ``log_file`` and the curves to ``plot``.
    Under torchrun (a process group initialised, see :mod:`mesc.training.dist`) each process
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
    (:func:`mesc.models.checkpoints.load_backbone_only`).
    ``inputs``: ``(label, path)`` pairs the caller read to make ``model`` (its file, its weights):
    with the data folders, ``init``, ``backbone_weights`` and ``resume`` no output may be one of
    them (:func:`check_outputs`).
    """
    cfg = config or TrainConfig()
    cfg.check()
    read = [("--data", data_dir), ("--val", val_dir), ("--init", init), ("--backbone-weights", backbone_weights),
            *inputs]
    rank, world = rank_and_world()
    if rank == 0:  # before the resume file or any weights are read: the run's own files first
        check_outputs(out, checkpoint, log_file, plot, force, read, resume)
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
        from mesc.models.checkpoints import load_backbone_only

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
    if cfg.crop:
        training_data.check_crop(cfg.crop, *dataset.first_size())
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    device = _device(cfg, world)
    if state is not None:  # another model's checkpoint: one line naming the first keys, as -w gets
        from mesc.models.checkpoints import load_state

        load_state(getattr(model, "module", model), state.get("model"), f"--resume {resume}")
    model.to(device)
    if world > 1 and device.type == "cuda":
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    norm = normalization_of(model)
    loader, sampler = training_data.make_loader(dataset, cfg.batch, cfg.workers, seed=cfg.seed, rank=rank,
                                                world=world)
    val = SegData(val_dir, split=val_split) if val_dir is not None else None
    records = [r for r in state["history"]] if state is not None else []
    # a fresh run starts a fresh log: its first epoch replaces an existing one (allowed by --force),
    # which is kept until then
    fresh_log = log_file is not None and state is None
    run = _Run(cfg, settings, dataset, loader, sampler, device, rank, world, val, checkpoint, log_file, plot, log,
               progress, records, state, fresh_log)

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
        freeze_norm_stats(model, early_ids)

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
    scheduled = exit_dropout_schedule(step, len(outs), cfg.exit_dropout)
    return sum(terms[k] for k in scheduled), [t.detach() for t in terms]


def save_checkpoint(model, path) -> None:
    """float32 state_dict, written through a temporary file so a crash leaves no half file."""
    with atomic_file(path) as tmp:
        torch.save(training_state.plain_state(model), tmp)
