"""MESS's losses: the exit-dropout schedule and loss, positive filtering distillation, and which
parameters belong to the early heads."""

import math

import pytest
import torch

from mesc import training
from tiny_nets import tiny_candidates, tiny_model


def test_exit_dropout_schedule_round_robin():
    assert [training.exit_dropout_schedule(j, 3, "prose") for j in range(4)] == [[0, 2], [1, 2], [0, 2], [1, 2]]
    assert [training.exit_dropout_schedule(j, 4, "prose")[0] for j in range(6)] == [0, 1, 2, 0, 1, 2]
    assert training.exit_dropout_schedule(7, 2, "prose") == [0, 1]
    assert training.exit_dropout_schedule(5, 1, "prose") == [0]


def test_exit_dropout_eq2_is_the_papers_indicator():
    """MESS Eq. 2: early exit i (from 1) on batch j (from 1) iff j mod i == 0; the final always.
    Indices here are the flattened exits (0-based) and the 0-based step, so j = step + 1."""
    # 2 early exits: exit 1 every batch, exit 2 on even j
    assert [training.exit_dropout_schedule(s, 3, "eq2") for s in range(6)] == [
        [0, 2], [0, 1, 2], [0, 2], [0, 1, 2], [0, 2], [0, 1, 2]]
    # 3 early exits, j = 1..12: exit 3 on j = 3, 6, 9, 12
    assert [training.exit_dropout_schedule(s, 4, "eq2") for s in range(12)] == [
        [0, 3], [0, 1, 3], [0, 2, 3], [0, 1, 3], [0, 3], [0, 1, 2, 3],
        [0, 3], [0, 1, 3], [0, 2, 3], [0, 1, 3], [0, 3], [0, 1, 2, 3]]
    # 4 early exits: j = 12 is a multiple of 1, 2, 3 and 4; j = 7 of 1 alone
    assert training.exit_dropout_schedule(11, 5, "eq2") == [0, 1, 2, 3, 4]
    assert training.exit_dropout_schedule(6, 5, "eq2") == [0, 4]
    assert training.exit_dropout_schedule(9, 2, "eq2") == [0, 1]
    assert training.exit_dropout_schedule(9, 1, "eq2") == [0]
    with pytest.raises(ValueError, match="exit dropout must be one of"):
        training.exit_dropout_schedule(0, 3, "random")


def test_exit_dropout_eq2_loss_is_the_hand_sum():
    L3 = math.log(3)
    # one labelled pixel, class 1; exits' CE: -log(1/2), -log(3/4), -log(1/4)
    outs = [torch.zeros(1, 2, 1, 1), torch.tensor([[[[0.0]], [[L3]]]]), torch.tensor([[[[L3]], [[0.0]]]])]
    y = torch.tensor([[[1]]])
    ce = [math.log(2), math.log(4 / 3), math.log(4)]
    # j = 1: exit 1 and the final; j = 2: every exit
    assert training.exit_dropout_loss(outs, y, 0, mode="eq2").item() == pytest.approx(ce[0] + ce[2])
    assert training.exit_dropout_loss(outs, y, 1, mode="eq2").item() == pytest.approx(sum(ce))
    assert training.exit_dropout_loss(outs, y, 2, mode="eq2").item() == pytest.approx(ce[0] + ce[2])


@pytest.mark.parametrize("mode, batch_index, trained", [("prose", 0, {0, 2}), ("prose", 1, {1, 2}),
                                                        ("eq2", 0, {0, 2}), ("eq2", 1, {0, 1, 2})])
def test_exit_dropout_loss_leaves_the_other_heads_without_gradient(mode, batch_index, trained):
    model = tiny_model().train()
    x, y = torch.randn(2, 3, 16, 16), torch.randint(0, 6, (2, 16, 16))
    training.exit_dropout_loss(model(x), y, batch_index, mode=mode).backward()
    for k, head in enumerate(model.exits):
        grads = [p.grad for p in head.parameters()]
        if k in trained:
            assert all(g is not None and g.abs().sum() > 0 for g in grads), k
        else:
            assert all(g is None for g in grads), k
    assert all(p.grad is not None for p in model.blocks.parameters())  # the backbone always learns


def test_exit_dropout_loss_value():
    outs = [torch.zeros(1, 2, 1, 1), torch.tensor([[[[0.0]], [[math.log(3)]]]]), torch.zeros(1, 2, 1, 1)]
    y = torch.tensor([[[1]]])
    # prose, batch 1 -> exits 1 and 2: CE = -log(3/4) + log 2
    assert training.exit_dropout_loss(outs, y, 1, mode="prose").item() == pytest.approx(math.log(4 / 3) + math.log(2))


def test_pfd_loss_hand_computed_2x2():
    """MESS Eq. 3 per pixel: alpha * 1[final right] * CE + (1 - alpha) * KL(final || exit), averaged
    over the labelled pixels."""
    L3 = math.log(3)
    # Two classes; logits as (class0, class1) per pixel of a 2x2 image.
    #   a (0,0): target 1, final [0, ln3] -> p=(1/4, 3/4), predicts 1: correct; exit [ln3, 0] -> q=(3/4, 1/4)
    #   b (0,1): target 0, final [0, ln3] -> predicts 1: WRONG, so no CE here; exit [0, 0] -> q=(1/2, 1/2)
    #   c (1,0): target 0, final [ln3, 0] -> p=(3/4, 1/4), correct; exit [0, 0]
    #   d (1,1): target 255 (ignore): counted nowhere
    final = torch.tensor([[[0.0, 0.0], [L3, 0.0]], [[L3, L3], [0.0, L3]]]).unsqueeze(0)
    exit_ = torch.tensor([[[L3, 0.0], [0.0, L3]], [[0.0, 0.0], [0.0, 0.0]]]).unsqueeze(0).requires_grad_()
    target = torch.tensor([[[1, 0], [0, 255]]])
    # CE on the positives a, c: -ln(1/4) - ln(1/2) = 1.386294 + 0.693147 = 2.079442 (b adds none)
    # KL(p||q): a = 1/4 ln(1/3) + 3/4 ln 3 = 0.5 ln 3 = 0.549306
    #           b = c = 1/4 ln(1/2) + 3/4 ln(3/2) = -0.173287 + 0.304099 = 0.130812; sum 0.810930
    # both sums over the 3 labelled pixels
    assert training.pfd_loss(exit_, final, target, alpha=1.0).item() == pytest.approx(2.079442 / 3, abs=1e-5)
    assert training.pfd_loss(exit_, final, target, alpha=0.0).item() == pytest.approx(0.810930 / 3, abs=1e-5)
    final.requires_grad_()
    loss = training.pfd_loss(exit_, final, target, alpha=0.25)
    assert loss.item() == pytest.approx((0.25 * 2.079442 + 0.75 * 0.810930) / 3, abs=1e-5)
    loss.backward()
    assert final.grad is None  # the final exit is the teacher
    assert exit_.grad[0, :, 1, 1].abs().sum() == 0  # the ignored pixel
    # b gets only the KL pull toward the final exit's (1/4, 3/4): d/dz0 = (1 - alpha) * (q0 - p0) / 3 pixels
    assert exit_.grad[0, 0, 0, 1].item() == pytest.approx(0.75 * (0.5 - 0.25) / 3, abs=1e-6)
    # a gets both: d/dz0 = [alpha * (q0 - 0) + (1 - alpha) * (q0 - p0)] / 3 = (0.25 * 0.75 + 0.75 * 0.5) / 3
    assert exit_.grad[0, 0, 0, 0].item() == pytest.approx((0.25 * 0.75 + 0.75 * 0.5) / 3, abs=1e-6)


def test_exit_dropout_has_one_default_everywhere():
    """eq2 (the paper's Eq. 2) is the default: the schedule, the loss, TrainConfig and mesc train
    agree (the CLI cannot import the torch-side constant, so it repeats it)."""
    import inspect

    from mesc.training.command import train_cmd

    assert training.DEFAULT_EXIT_DROPOUT == "eq2"
    assert training.TrainConfig().exit_dropout == training.DEFAULT_EXIT_DROPOUT
    for fn in (training.exit_dropout_schedule, training.exit_dropout_loss):
        assert inspect.signature(fn).parameters["mode"].default == training.DEFAULT_EXIT_DROPOUT
    assert next(p.default for p in train_cmd.params if p.name == "exit_dropout") == training.DEFAULT_EXIT_DROPOUT


def test_pfd_alpha_has_one_default_everywhere():
    import inspect

    from mesc.training.command import train_cmd

    assert training.TrainConfig().alpha == training.DEFAULT_ALPHA
    assert inspect.signature(training.pfd_loss).parameters["alpha"].default == training.DEFAULT_ALPHA
    assert next(p.default for p in train_cmd.params if p.name == "alpha") == training.DEFAULT_ALPHA


def test_pfd_loss_no_positive_pixels_is_finite():
    final = torch.tensor([[[[5.0]], [[0.0]]]])
    loss = training.pfd_loss(torch.zeros(1, 2, 1, 1), final, torch.tensor([[[1]]]), alpha=1.0)
    assert math.isfinite(loss.item())


def test_early_exit_parameters_found_from_the_graph():
    model = tiny_model()
    shared, early = training.early_exit_parameters(model, torch.randn(2, 3, 16, 16))
    early_ids = {id(p) for p in early}
    expected = {id(p) for k in (0, 1) for p in model.exits[k].parameters()}
    assert early_ids == expected
    assert {id(p) for p in shared} == {id(p) for p in model.parameters()} - expected
    assert model.training  # the probe restores the mode


def test_candidates_flatten_point_by_point_and_count_as_early_heads():
    model = tiny_candidates().eval()
    x = torch.randn(2, 3, 16, 16)
    points = model(x)
    outs = training.as_exit_list(points)
    assert [o.data_ptr() for o in outs] == [t.data_ptr() for t in (*points[0], *points[1], points[2])]
    shared, early = training.early_exit_parameters(model, x)
    assert {id(p) for p in early} == {id(p) for k in (0, 1) for p in model.exits[k].parameters()}
