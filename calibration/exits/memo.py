"""Memoised evaluation: run every exit of a package once over a labelled calibration set.

The images go through the package's segments with the mesc runtime (any backend and device it
supports; ONNX Runtime on the CPU by default) in *anytime* mode
(every exit in turn, the logits and the in-graph labels brought back), so the labels scored
here are exactly those the runtime returns. Per image and exit the memo keeps:

* ``inter`` / ``union`` (N x E x C, int64): per-class pixel intersection and union against the
  mask (255 = ignore), scored at the mask's resolution as ``mesc eval`` scores
  (:func:`mesc.evaluation.scoring.confusion_at_mask`). Counts add over images, so the mIoU of
  any assignment of images to exits follows from sums (see :mod:`mesc.calibration.exits.search`).
* ``scores["mess"]`` (N x E x G): the MESS image confidence ``c_img`` at every ``th_pix`` of the
  grid, with the exit's own policy settings from the manifest (confidence kind, edge band and
  its definition, stride). Computed on the host from the logits with the reference rule of :mod:`mesc.policy`
  (for an odd window, ``median >= t`` iff ``more than half the window >= t``, so one box sum of
  the indicator per grid value gives the edge-enhanced count exactly). The in-graph value at the
  manifest's ``th_pix`` is compared with it; the largest difference is kept in
  ``meta["conf_check_max_abs"]`` (0 or one pixel's worth where a float32 confidence sits on
  the threshold).
* ``scores[kind]`` (N x E) for every other kind with a memo score
  (:attr:`mesc.policy.PolicyKind.memo_score`: ``mean_top1``, ``mean_entropy``, ``fft`` and any
  kind registered since), so that they are calibrated on the same images and terms.
* ``features`` (N x E x F): the learned policy's decision features
  (:mod:`mesc.policy.learned`), which :mod:`mesc.calibration.exits.decision` trains on.

Where the heads run another policy kind than MESS, the in-graph score is compared with that
kind's memo score instead (a kind without one is not: the learned network's weights live in
the graph).

Candidate heads (exits sharing an exit point) are exits here like any other: each runs once,
disabled ones too, and gets its own column; which of them to keep is the search's business.

Everything is cached in an ``.npz`` keyed by the package's file checksums and policy settings,
the data files (paths, sizes, modification times), the grid and the resize flag.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mesc.errors import CalibrationError, MescError
from mesc.evaluation.metrics import IGNORE_INDEX, counts_from_confusion, miou
from mesc.policy import COMPILED_POLICY_KEYS, Softmaxed, get_kind, kinds, mess_confidence_grid, policy_kind
from mesc.policy.learned import FEATURES, features_from_confidence
from mesc.policy.mess import mess_band
from mesc.progress import bar as progress_bar
from mesc.evaluation.scoring import confusion_at_mask

MEMO_VERSION = 3  # 2: scored at the masks' resolution (masks no longer resized with --resize); 3: features
# 20 th_pix values: coarse where top-1 confidences are rare, fine near 1 where they pile up.
DEFAULT_TH_PIX_GRID = tuple(np.round(np.concatenate([np.linspace(0.5, 0.95, 14),
                                                     [0.96, 0.97, 0.98, 0.99, 0.995, 0.999]]), 4).tolist())


def memo_kinds() -> list:
    """The kinds the memo keeps one score per image and exit of (MESS keeps its grid)."""
    return [k.name for k in kinds() if k.memo_score is not None]


@dataclass
class Memo:
    exits: list
    num_classes: int
    th_pix_grid: np.ndarray
    inter: np.ndarray
    union: np.ndarray
    scores: dict
    images: list
    meta: dict = field(default_factory=dict)
    features: np.ndarray | None = None  # N x E x F, the learned policy's decision features

    @property
    def n(self) -> int:
        return len(self.images)

    def conf(self, policy: str = "mess") -> np.ndarray:
        """The policy's scores as N x E x G (G = 1 for single-score policies)."""
        if policy not in self.scores:
            raise MescError(f"unknown policy {policy!r}; calibrated policies: {sorted(self.scores)}")
        s = self.scores[policy]
        return s if s.ndim == 3 else s[:, :, None]

    def miou(self, exit_index) -> float:
        """mIoU of one exit over every image (the budgeted setting)."""
        return float(miou(self.inter[:, exit_index].sum(0), self.union[:, exit_index].sum(0)))

    def subset(self, rows) -> "Memo":
        rows = np.asarray(rows)
        return Memo(self.exits, self.num_classes, self.th_pix_grid, self.inter[rows], self.union[rows],
                    {k: v[rows] for k, v in self.scores.items()}, [self.images[i] for i in rows], dict(self.meta),
                    None if self.features is None else self.features[rows])

    # persistence -------------------------------------------------------------------------
    def save(self, path) -> None:
        path = Path(path)
        meta = dict(self.meta, exits=self.exits, num_classes=self.num_classes, images=self.images,
                    memo_version=MEMO_VERSION)
        arrays = {"inter": self.inter, "union": self.union, "th_pix_grid": self.th_pix_grid,
                  **{f"score_{k}": v for k, v in self.scores.items()},
                  **({} if self.features is None else {"features": self.features})}
        from mesc.package.staging import atomic_file

        with atomic_file(path) as tmp, open(tmp, "wb") as f:  # a file object: savez adds no suffix
            np.savez_compressed(f, meta=np.array(json.dumps(meta)), **arrays)

    @classmethod
    def load(cls, path) -> "Memo":
        try:
            with np.load(path, allow_pickle=False) as z:
                meta = json.loads(str(z["meta"]))
                scores = {k[len("score_"):]: z[k] for k in z.files if k.startswith("score_")}
                return cls(meta.pop("exits"), meta.pop("num_classes"), z["th_pix_grid"], z["inter"], z["union"],
                           scores, meta.pop("images"), meta, z["features"] if "features" in z.files else None)
        except (OSError, KeyError, ValueError) as err:
            raise MescError(f"cannot read calibration cache {path}: {err}") from None


def is_cache_file(path) -> bool:
    """Whether ``path`` is a calibration cache mesc wrote (an ``.npz`` whose meta names the
    memo version), whatever its version."""
    try:
        with np.load(path, allow_pickle=False) as z:
            return "memo_version" in json.loads(str(z["meta"]))
    except (OSError, KeyError, ValueError, TypeError, AttributeError):
        return False


def check_cache(path, inputs=()) -> None:
    """Refuse a cache path that holds something other than a mesc cache (it would be replaced:
    a cache is read, then rewritten when stale), overlaps an input, or cannot be written."""
    from mesc.package.outputs import check_file_output

    if Path(path).is_file() and not is_cache_file(path):
        raise MescError(f"--cache {path} exists and is not a mesc calibration cache; mesc replaces only "
                        f"its own cache files: give another path")
    check_file_output(path, "--cache", force=True, inputs=inputs)


# ---------------------------------------------------------------------------------------------
# per-image statistics

def image_stats(logits: np.ndarray, labels: np.ndarray, grid, policy: dict) -> dict:
    """Everything the memo keeps from one exit's logits (M x H x W), with one softmax and one
    edge band: the MESS grid, every kind's memo score (:func:`memo_kinds`) and the learned
    kind's features, by the functions of :mod:`mesc.policy`."""
    s = Softmaxed(logits[None])
    conf = s.confidence(policy.get("confidence", "top1"))
    stride = policy.get("stride", 8)
    band = mess_band(policy, labels[None])
    out = {"mess": mess_confidence_grid(conf, grid, band, stride)[:, 0],
           **{k: float(get_kind(k).memo_score(s)[0]) for k in memo_kinds()},
           "features": features_from_confidence(s.top1, s.entropy)[0]}
    if policy_kind(policy) == "mess" and policy.get("th_pix") is not None:
        out["at_th_pix"] = float(mess_confidence_grid(conf, [policy["th_pix"]], band, stride)[0, 0])
    return out


# ---------------------------------------------------------------------------------------------
# reading the calibration set

def _resize(image: np.ndarray, hw) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.fromarray(image).resize((hw[1], hw[0]), Image.BILINEAR))


def calibration_pairs(data_dir, limit: int | None = None, split: str | None = None) -> list:
    """The (image, mask) paths of a labelled folder (of its ``split``, where given), the first
    ``limit`` of them; every image must have a mask."""
    from mesc.datasets import read_folder

    pairs = read_folder(data_dir, require_masks=True, split=split)
    return pairs if limit is None else pairs[:limit]


def load_calibration_set(data_dir, size, num_classes: int, resize: bool = False, limit: int | None = None,
                         split: str | None = None):
    """``[(name, image HxWx3 uint8, mask HxW uint8)]`` checked against the package.

    With ``resize`` the images are resized (bilinear) to the package input; the masks keep
    their own resolution, where the exits' logits are scored (:mod:`mesc.evaluation.scoring`).
    Refuses (MescError): images without masks (named), mask ids that are not classes of the
    model (other than 255), images of another size than the package input unless ``resize``,
    and masks without a labelled pixel (:func:`check_labelled`).
    """
    out = [load_item(img, mask, size, num_classes, resize) for img, mask in calibration_pairs(data_dir, limit, split)]
    check_labelled(data_dir, [(name, mask) for name, _, mask in out])
    return out


def load_item(img_path, mask_path, size, num_classes: int, resize: bool = False):
    """One ``(name, image, mask)`` of a labelled set, checked as :func:`load_calibration_set`
    says (all but the labelled-pixel check, which needs the whole set)."""
    from mesc.datasets.images import load_pair

    h, w = size
    image, mask = load_pair(img_path, mask_path)
    if image.shape[:2] != (h, w):
        if not resize:
            raise MescError(f"image {img_path} is {image.shape[1]}x{image.shape[0]} (WxH) but the package "
                            f"takes {w}x{h}; pass --resize to resize the images (bilinear; the masks keep "
                            f"their resolution, where the logits are scored)")
        image = _resize(image, (h, w))
    ids = np.unique(mask)
    bad = ids[(ids != 255) & (ids >= num_classes)]
    if bad.size:
        raise MescError(f"mask {mask_path} holds class ids {bad.tolist()} but the model has {num_classes} "
                        f"classes (ids 0..{num_classes - 1}; 255 marks ignored pixels)")
    return str(img_path), image, mask


def unlabelled_masks(masks) -> list:
    """The names of the masks (``[(name, mask)]``) without a labelled pixel (all ignore)."""
    return [name for name, mask in masks if not (np.asarray(mask) != IGNORE_INDEX).any()]


def check_labelled(data_dir, masks) -> None:
    """Refuse a calibration set where some masks (``[(name, mask)]``) have no labelled pixel.

    Refused, not skipped: such an image counts for cost but not for mIoU, so the search would
    send it out at the first exit and the expected cost would be optimistic; and a mask that is
    all 255 is more often a wrong mask folder than a real image with nothing to label.
    """
    empty = unlabelled_masks(masks)
    if not empty:
        return
    if len(empty) == len(masks):
        raise CalibrationError(f"no mask in {data_dir} has a labelled pixel (every pixel is {IGNORE_INDEX}, "
                               "ignored): there is nothing to calibrate on; check the masks folder")
    shown = ", ".join(Path(n).name for n in empty[:5]) + (", ..." if len(empty) > 5 else "")
    raise CalibrationError(f"{len(empty)} of {len(masks)} masks in {data_dir} have no labelled pixel (every pixel "
                           f"is {IGNORE_INDEX}, ignored): {shown}; such images count for cost but not for mIoU, so "
                           "the search would send them out at the first exit: fix their masks or remove them")


def _cache_key(pkg, data_pairs_stat, grid, resize, runs_on: str = "onnxruntime/cpu") -> str:
    # runs_on: another backend or device computes (slightly) other logits, so its own cache
    h = hashlib.sha256()
    # kinds: a cache from before a kind was registered has no scores for it
    h.update(json.dumps({"v": MEMO_VERSION, "files": dict(pkg.files), "runs_on": runs_on, "kinds": memo_kinds(),
                         "policy": [{k: e.policy.get(k) for k in COMPILED_POLICY_KEYS}
                                    for e in pkg.exits],
                         "grid": [float(g) for g in grid], "resize": bool(resize), "data": data_pairs_stat},
                        sort_keys=True).encode())
    return h.hexdigest()


def _data_stat(data_dir, limit, split=None):
    pairs = calibration_pairs(data_dir, limit, split)
    return [[str(p), p.stat().st_size, p.stat().st_mtime_ns, str(m), m.stat().st_size, m.stat().st_mtime_ns]
            for p, m in pairs]


# ---------------------------------------------------------------------------------------------
# the evaluation

def package_classes(pkg) -> int:
    """The number of classes every exit of ``pkg`` predicts."""
    classes = {ex.num_classes for ex in pkg.exits}
    if len(classes) != 1:
        raise MescError(f"the package's exits disagree on the number of classes: {sorted(classes)}")
    return classes.pop()


def open_pipeline(pkg, backend: str = "onnxruntime", device="cpu", threads: int | None = None):
    """The runtime pipeline that runs every exit of the loaded package ``pkg`` over a labelled
    set, with ``pkg``'s thresholds as they are in memory."""
    from mesc.runtime import Pipeline, make_runner

    options = {} if threads is None else {"threads": threads}
    return Pipeline(pkg, make_runner(pkg, backend, device, **options))


def batches(pipe, items, batch: int):
    """``items`` (a list) cut into the runs of ``batch`` that ``pipe`` takes (a static-batch
    package its own batch)."""
    if pipe.static_batch is not None:
        batch = pipe.static_batch  # the graphs take no other batch: feed them theirs
    return (items[s:s + batch] for s in range(0, len(items), batch))


def exit_results(pipe, parts, bar):
    """Run every exit (disabled ones too) of ``pipe`` over ``parts`` (batches of
    ``(name, image, mask)``); yield ``(row, exit position, Result with logits, mask)``, rows
    counted over all batches, every exit of a batch before the next batch."""
    s = 0
    for part in parts:
        for e, results in enumerate(pipe.anytime([im for _, im, _ in part], logits=True, all_exits=True)):
            for i, r, (_, _, mask) in zip(range(s, s + len(part)), results, part):
                yield i, e, r, mask
        s += len(part)
        bar.update(len(part))


def evaluate(package, data_dir, th_pix_grid=None, resize: bool = False, batch: int = 8, cache=None,
             progress: bool = False, limit: int | None = None, threads: int | None = None,
             split: str | None = None, backend: str = "onnxruntime", device="cpu", shard=None) -> Memo:
    """Run every exit of ``package`` (a directory or a loaded Package) over ``data_dir`` (its
    ``split``, where given) once, on ``backend`` and ``device`` (those of :func:`mesc.load`).

    ``cache``: an ``.npz`` path; reused when its key matches (package files and policy, data
    files, grid, resize, backend and device), else merged from the shards beside it where there
    are (:mod:`~mesc.calibration.exits.memo_shards`), else (re)written. ``shard`` ``(I, N)``
    (with ``cache``): only shard I's images, written to the shard's file beside the cache.
    ``batch`` images run per call (a static-batch package runs its own batch).
    """
    from mesc.calibration.exits import memo_shards
    from mesc.package import Package

    pkg = package if isinstance(package, Package) else Package.load(package)
    grid = np.asarray(DEFAULT_TH_PIX_GRID if th_pix_grid is None else th_pix_grid, dtype=np.float64)
    if grid.ndim != 1 or not len(grid) or not ((grid >= 0) & (grid <= 1)).all():
        raise MescError(f"th_pix grid must be values in [0, 1], got {grid.tolist()}")
    if shard is not None and cache is None:
        raise MescError("--shard writes a shard beside the --cache file: give --cache")
    num_classes = package_classes(pkg)
    _, c, h, w = pkg.input.shape
    inputs = [("PACKAGE", pkg.root), ("--data", data_dir)]
    runs_on = f"{backend}/{device}"
    pairs = calibration_pairs(data_dir, limit, split)
    static = pkg.input.static_batch  # the batch the images run in where the graphs take only theirs

    def shard_fields(run_batch):
        return memo_shards.fields(pkg, pairs, data_dir, grid, resize, runs_on, run_batch, MEMO_VERSION,
                                  COMPILED_POLICY_KEYS)

    key = None
    if cache is not None:
        check_cache(cache, inputs=inputs)
        key = _cache_key(pkg, _data_stat(data_dir, limit, split), grid, resize, runs_on)
        if shard is not None:
            check_cache(memo_shards.shard_path(cache, *shard), inputs=inputs)
        elif Path(cache).is_file():
            try:
                memo = Memo.load(cache)
                if memo.meta.get("key") == key:
                    memo.meta["cached"] = True
                    return memo
            except MescError:
                pass
        if shard is None:
            merged = memo_shards.merge(cache, shard_fields(static or batch), Memo.load)
            if merged is not None:
                merged.meta.update(key=key, cached=False, package=str(pkg.root), data=str(data_dir))
                merged.save(cache)
                return merged

    pipe = open_pipeline(pkg, backend, device, threads)
    run_batch = pipe.static_batch or batch
    if shard is not None:
        pairs = [pairs[i] for i in memo_shards.rows(len(pairs), shard, run_batch)]
    try:
        data = [load_item(img, mask, (h, w), num_classes, resize) for img, mask in pairs]
        check_labelled(data_dir, [(name, mask) for name, _, mask in data])
    except BaseException:
        pipe.close()
        raise
    exits = pipe.exit_names
    e_count, n = len(exits), len(data)
    inter = np.zeros((n, e_count, num_classes), np.int64)
    union = np.zeros_like(inter)
    scores = {"mess": np.zeros((n, e_count, len(grid))), **{k: np.zeros((n, e_count)) for k in memo_kinds()}}
    features = np.zeros((n, e_count, FEATURES))
    check = 0.0
    pol = [pkg.policy(e) for e in exits]
    # what the heads' in-graph score is checked against: MESS at th_pix, or the kind's own score
    checked = ["at_th_pix" if get_kind(policy_kind(p)).pixel_threshold else
               policy_kind(p) if get_kind(policy_kind(p)).memo_score is not None else None for p in pol]
    bar = progress_bar(n, "calibrate: run exits", "img", show=progress)
    try:
        for i, e, r, mask in exit_results(pipe, batches(pipe, data, batch), bar):
            logits = np.asarray(r.logits, dtype=np.float32)
            inter[i, e], union[i, e] = counts_from_confusion(confusion_at_mask(logits, mask, num_classes, r.labels))
            if r.policy_logits is None:
                st = image_stats(logits, r.labels, grid, pol[e])
            else:  # the policy reads the exit's native-resolution logits
                native = np.asarray(r.policy_logits, dtype=np.float32)
                st = image_stats(native, native.argmax(0), grid, pol[e])
            for k in scores:
                scores[k][i, e] = st[k]
            features[i, e] = st["features"]
            graph = r.confidences.get(exits[e])
            if graph is not None and st.get(checked[e]) is not None:
                check = max(check, abs(float(graph) - st[checked[e]]))
    finally:
        bar.close()
        pipe.close()
    meta = {"package": str(pkg.root), "data": str(data_dir), "split": split, "resize": bool(resize),
            "conf_check_max_abs": check, "pixels": int(h * w), "key": key, "cached": False,
            "backend": pipe.runner.backend, "device": str(pipe.runner.device), "precision": pipe.runner.precision}
    if cache is not None:  # shards made anywhere are checked against each other by these
        meta["fields"] = memo_shards.fields(pkg, calibration_pairs(data_dir, limit, split), data_dir, grid, resize,
                                            runs_on, run_batch, MEMO_VERSION, COMPILED_POLICY_KEYS)
    memo = Memo(exits, num_classes, grid, inter, union, scores, [name for name, _, _ in data], meta, features)
    if shard is not None:
        memo.meta["shard"] = list(shard)
        memo.save(memo_shards.shard_path(cache, *shard))
    elif cache is not None:
        memo.save(cache)
    return memo


__all__ = ["Memo", "evaluate", "calibration_pairs", "check_labelled", "unlabelled_masks", "load_calibration_set",
           "image_stats",
           "batches", "exit_results", "load_item", "open_pipeline", "package_classes",
           "DEFAULT_TH_PIX_GRID", "memo_kinds"]
