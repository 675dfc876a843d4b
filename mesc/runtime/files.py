"""Run a pipeline over image files: palette PNGs and a results table (``mesc run``).

Each file is its own item: one that cannot be read, or has the wrong size, is reported and
skipped, nothing is written for it, and the others still run.
"""

from __future__ import annotations

import csv
import dataclasses
from collections import Counter
from pathlib import Path

from mesc.package.outputs import RUN_MARKER
from mesc.progress import bar as progress_bar
from mesc.runtime.errors import InputError
from mesc.runtime.images import collect_images, read_image, write_label_png
from mesc.runtime.overlay import class_table, write_overlay_png
from mesc.package.staging import write_json_atomic


@dataclasses.dataclass
class RunSummary:
    rows: list  # one dict per image written
    failed: list  # {"file", "error"} per image skipped
    exit_names: list
    deadline_ms: float | None = None  # anytime runs: the deadline each call had

    @property
    def histogram(self) -> dict:
        counts = Counter(r["exit"] for r in self.rows)
        return {name: counts.get(name, 0) for name in self.exit_names}

    @property
    def mean_latency_ms(self) -> float | None:
        return sum(r["latency_ms"] for r in self.rows) / len(self.rows) if self.rows else None

    def format(self) -> str:
        lines = [f"{len(self.rows)} image(s) segmented, {len(self.failed)} skipped"]
        total = max(len(self.rows), 1)
        width = max((len(n) for n in self.exit_names), default=4)
        for name, n in self.histogram.items():
            lines.append(f"  {name:<{width}}  {n:5d}  {'#' * round(40 * n / total)}")
        if self.rows:
            lines.append(f"mean latency {self.mean_latency_ms:.2f} ms per image")
        if self.deadline_ms is not None and self.rows:
            late = sum(r["latency_ms"] > self.deadline_ms for r in self.rows)
            lines.append(f"deadline {self.deadline_ms:g} ms: missed by {late} of {len(self.rows)} call(s)")
        return "\n".join(lines)


def check_output(out, inputs, package, force: bool) -> Path:
    """Refuse, before anything is loaded or written, an output folder that overlaps the package
    or the images, or that holds anything but a previous run's files (see
    :func:`mesc.package.outputs.check_dir_output`)."""
    from mesc.package.outputs import check_dir_output

    return check_dir_output(out, "run", force, inputs=[("PACKAGE", package), *(("IMAGES", p) for p in inputs)])


def run_files(pipe, inputs, out, exit=None, resize: bool = False, batch: int = 1, force: bool = False,
              progress: bool = True, echo=print, deadline_ms: float | None = None,
              overlay: bool = False) -> RunSummary:
    """Segment every image among ``inputs`` (files or folders) into the folder ``out``.

    ``overlay``: also write ``<stem>.overlay.png``, the image with its class colours blended over
    it and a legend (classes, exit, latency; :mod:`mesc.runtime.overlay`).

    ``out`` must be new, empty, or (with ``force``) a previous run's output; it appears, or is
    replaced, only when every image has been tried, so an interrupted run leaves the old one.
    """
    from mesc.package.staging import staging_dir

    files = collect_images(inputs)
    if not files:
        raise InputError(f"no images found in {', '.join(map(str, inputs))}")
    out = check_output(out, inputs, pipe.pkg.root, force)
    c, h, w = pipe.chw
    num_classes = max(ex.num_classes for ex in pipe.pkg.exits)
    names, colours = class_table(pipe.pkg)
    stored_colours = colours if pipe.pkg.view.classes else None
    rows, failed, used = [], [], set()
    bar = progress_bar(len(files), "run: segment", "images", progress)

    with staging_dir(out, force=True) as tmp:
        def flush(items):
            if not items:
                return
            batch_in = [img for _, img in items]
            if deadline_ms is None:
                results = pipe(batch_in, exit=exit)
            else:  # anytime: the last prediction the deadline allows
                results = list(pipe.anytime(batch_in, deadline=deadline_ms / 1e3))[-1]
            for (path, img), res in zip(items, results):
                name = _unique_name(path.stem, used)
                write_label_png(tmp / name, res.labels, num_classes, stored_colours)
                row = {"file": str(path), "output": name}
                if overlay:
                    row["overlay"] = _unique_name(f"{path.stem}.overlay", used)
                    write_overlay_png(tmp / row["overlay"], img, res.labels, names, colours, res.exit,
                                      res.timings["total_ms"])
                rows.append({**row, **res.as_row()})
            bar.update(len(items))

        pending = []
        for path in files:
            try:
                pending.append((path, read_image(path, size=(h, w), channels=c, resize=resize)))
            except InputError as err:
                failed.append({"file": str(path), "error": str(err)})
                bar.update(1)
                echo(f"skipped: {err}")
                continue
            if len(pending) >= batch:
                flush(pending)
                pending = []
        flush(pending)
        bar.close()
        summary = RunSummary(rows, failed, pipe.exit_names, deadline_ms)
        _write_tables(tmp, summary, pipe)
    return summary


def _unique_name(stem: str, used: set) -> str:
    """``<stem>.png``, numbered when taken. Compared case-folded: on a case-insensitive file
    system ``A.png`` would overwrite ``a.png``. A stem is a file name's, so it holds no
    separator and the name stays inside the output folder."""
    name, n = f"{stem}.png", 1
    while name.casefold() in used:
        n += 1
        name = f"{stem}-{n}.png"
    used.add(name.casefold())
    return name


def _write_tables(out: Path, s: RunSummary, pipe) -> None:
    exits = s.exit_names
    with open(out / "results.csv", "w", newline="") as f:
        wr = csv.writer(f)
        wr.writerow(["file", "output", "exit", "exit_index", "latency_ms", *[f"confidence_{e}" for e in exits]])
        for r in s.rows:
            conf = r["confidences"]
            wr.writerow([r["file"], r["output"], r["exit"], r["exit_index"], f"{r['latency_ms']:.3f}",
                         *["" if conf.get(e) is None else f"{conf[e]:.6f}" for e in exits]])
    write_json_atomic(out / "results.json", {
        **RUN_MARKER, "package": str(pipe.pkg.root), "backend": pipe.runner.backend, "device": str(pipe.runner.device),
        "thresholds": {e: pipe.thresholds(e) for e in exits},
        "images": s.rows, "failed": s.failed,
        "summary": {"exits": s.histogram, "mean_latency_ms": s.mean_latency_ms},
    })
