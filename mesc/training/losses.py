"""MESS's two losses.

Stage 1 (exit-aware pre-training, MESS Eq. 2, "exit dropout"): on each batch only some exits
contribute to the loss, so the backbone is shaped for the final exit and, in turn, for each early
one. ``exit_dropout="eq2"`` (default): the equation as the paper writes it, early exit i
(numbered from 1) on the batches j (counted from 1 within stage 1) with ``j mod i == 0``, the
final exit always; ``"prose"``: the final exit and ONE early exit in turn, round-robin. Both depend on the
batch index alone, which ``--resume`` restores, so every process and a resumed run agree.

Stage 2 (MESS Eq. 3): every early head is trained with positive filtering distillation against
the final exit, per pixel ``alpha * 1[argmax final == y] * CE(exit, y) + (1 - alpha) *
KL(final || exit)``, averaged over the labelled pixels (temperature 1).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from mesc.datasets.labels import IGNORE
from mesc.training.exits import as_exit_list
from mesc.training.process_group import rank_and_world

EXIT_DROPOUT = ("prose", "eq2")
# eq2 trained the demo's shallow exit better than prose for the same final exit (stage 1, 34
# epochs, same seeds: 74.3 / 76.3 / 77.9 % against 72.7 / 76.3 / 78.0 % validation mIoU per exit;
# tests/test_demo_model.py), so the paper's equation is the default.
DEFAULT_EXIT_DROPOUT = "eq2"


def exit_dropout_schedule(batch_index: int, num_exits: int, mode: str = DEFAULT_EXIT_DROPOUT) -> list[int]:
    """Exits (flattened indices) that get the loss on stage 1's batch ``batch_index`` (counted
    from 0), final exit last. ``prose``: one early exit round-robin, plus the final. ``eq2``: MESS
    Eq. 2, ``1(j mod i = 0)`` with ``j = batch_index + 1`` and early exit ``i`` = index + 1, so
    exit 1 on every batch, exit 2 on every second one..., plus the final."""
    if num_exits < 1:
        raise ValueError("a model needs at least one exit")
    if mode not in EXIT_DROPOUT:
        raise ValueError(f"exit dropout must be one of {EXIT_DROPOUT}, got {mode!r}")
    if num_exits == 1:
        return [0]
    if mode == "prose":
        return [batch_index % (num_exits - 1), num_exits - 1]
    j = batch_index + 1
    return [k for k in range(num_exits - 1) if j % (k + 1) == 0] + [num_exits - 1]


def batch_count(mask):
    """How many pixels of ``mask`` the whole batch holds, per process: its own count, or under
    torchrun the sum over every process's share divided by the world size. Losses averaged over
    it give, once DistributedDataParallel averages the gradients, exactly the single-process
    gradient of the whole batch (a mean of per-process means would weigh the processes' pixels
    unequally wherever their counts differ: padding, or PFD's positive pixels)."""
    count = mask.sum().to(torch.float32)
    rank, world = rank_and_world()
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


def exit_dropout_loss(outputs, target, batch_index: int, ignore_index: int = IGNORE, mode: str = DEFAULT_EXIT_DROPOUT):
    """MESS Eq. 2: sum of the per-pixel mean cross-entropies of the scheduled exits only."""
    outputs = as_exit_list(outputs)
    return sum(exit_losses([outputs[k] for k in exit_dropout_schedule(batch_index, len(outputs), mode)],
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
