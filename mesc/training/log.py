"""The training log: one JSON line per epoch, and a PNG of the curves drawn from it."""

from __future__ import annotations

import json
from pathlib import Path


def append(path, record: dict, fresh: bool = False) -> None:
    """Add ``record`` to the log: appended line by line, so a resumed run continues the same
    log; ``fresh`` (a new run's first epoch) replaces the file whole instead, so an old log the
    run was allowed to replace stays until the run has something to put in its place."""
    if fresh:
        from mesc.package.staging import atomic_file

        with atomic_file(path) as tmp:
            Path(tmp).write_text(json.dumps(record) + "\n")
        return
    with open(path, "a") as f:
        f.write(json.dumps(record) + "\n")


def read(path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


def plot(records: list[dict], path, log=print) -> bool:
    """Loss per exit and validation mIoU per exit against the epoch; False (with a note) where
    matplotlib is not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        if log:
            log(f"matplotlib is not installed: no curves written to {path}")
        return False
    from mesc.package.staging import atomic_file

    x = list(range(1, len(records) + 1))
    fig, (ax_loss, ax_miou) = plt.subplots(1, 2, figsize=(10, 4))
    for key, ax, label in (("loss_per_exit", ax_loss, "loss"), ("val_miou", ax_miou, "val mIoU")):
        series = [r.get(key) for r in records]
        width = max((len(s) for s in series if s), default=0)
        for k in range(width):
            ax.plot(x, [s[k] if s and k < len(s) and s[k] is not None else float("nan") for s in series],
                    marker="o", label=f"exit {k}")
        ax.set_xlabel("epoch (stage 1, then stage 2)")
        ax.set_ylabel(label)
        if width:
            ax.legend()
    fig.tight_layout()
    with atomic_file(path) as tmp:
        fig.savefig(tmp)
    plt.close(fig)
    return True
