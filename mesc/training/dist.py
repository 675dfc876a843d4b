"""``mesc train`` under torchrun: one process per GPU (or CPU process with gloo).

    torchrun --nproc-per-node N -m mesc.training.dist --model ... --data ... -o model.pt

Takes ``mesc train``'s arguments (the same command, :mod:`mesc.training.command`: the entry
stands below the CLI and never imports it); ``--batch`` is the global batch, split evenly over
the processes. The process group comes from torchrun's environment (NCCL on CUDA, gloo on CPU);
rank 0 alone writes the checkpoint, the training log and the output.
"""

from __future__ import annotations

import os
import sys


def main(argv=None) -> None:
    import torch
    import torch.distributed as dist

    argv = list(sys.argv[1:] if argv is None else argv)
    on_gpu = any(a.startswith("cuda") for a in argv) and torch.cuda.is_available()
    if on_gpu:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
    dist.init_process_group("nccl" if on_gpu else "gloo")
    finished = False
    try:
        from mesc.training.command import train_cmd

        train_cmd.main(argv, prog_name="mesc.training.dist", standalone_mode=False)
        # rank 0 writes the log, curves, checkpoint and output after the last collective step:
        # every rank waits for it here
        dist.barrier()
        finished = True
    finally:
        if not finished:
            dist.destroy_process_group()
    # Tearing the group down races with the peers' own teardown (gloo aborts a rank whose peer
    # closed first, failing a run whose work is all written): the work is done and flushed, so
    # leave without running the group's destructors.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
