"""The learned policy: its features, its labels from the memo's counts, and its training
(deterministic, and better than a constant guess where the features carry the answer)."""

import numpy as np
import pytest

from mesc.calibration.exits.decision import (TrainOptions, good_enough, image_miou, learned_scores,
                                             train_decision_net, train_exit_nets)
from mesc.calibration.exits.memo import Memo
from mesc.errors import CalibrationError
from mesc.policy import get_policy
from mesc.policy.learned import FEATURES, TOP1_EDGES, DecisionNet, decision_features
from policy_cases import tied_logits


def test_features_of_hand_computed_confidences():
    # 3 of 8 pixels at top-1 0.5 (two classes tied), 5 at 1/3 (three tied); see tied_logits
    f = decision_features(tied_logits([3]))[0]
    assert f.shape == (FEATURES,)
    assert f[0] == 3 / 8 and (f[1:len(TOP1_EDGES)] == 0).all()  # only the 0.5 edge is reached
    # entropy confidence 1 - log2/log3 = 0.369 (>= 0.3 only) at the tied pairs, 0 at the triples
    assert f[len(TOP1_EDGES)] == 3 / 8 and (f[len(TOP1_EDGES) + 1:-2] == 0).all()
    assert f[-2] == pytest.approx((3 * 0.5 + 5 / 3) / 8) and f[-1] == pytest.approx(3 * (1 - np.log(2) / np.log(3)) / 8)


def test_labels_come_from_per_image_miou():
    # image 0: exit 0 gets class 0 half right, the final exit all right; image 1: both equal
    inter = np.array([[[1, 0], [2, 0]], [[3, 1], [3, 1]]])
    union = np.array([[[2, 0], [2, 0]], [[3, 2], [3, 2]]])
    np.testing.assert_allclose(image_miou(inter, union), [[0.5, 1.0], [0.75, 0.75]])
    np.testing.assert_array_equal(good_enough(inter, union, margin=0.01), [[False, True], [True, True]])
    np.testing.assert_array_equal(good_enough(inter, union, margin=0.5), [[True, True], [True, True]])


def toy_problem(n, seed):
    """Features in [0, 1]; an image is good enough when its mean top-1 (feature -2) and its
    fraction above 0.9 (feature 3) are both high: not a threshold on any one feature."""
    rng = np.random.default_rng(seed)
    f = rng.uniform(size=(n, FEATURES))
    return f, (f[:, -2] + f[:, 3] > 1.1) & (f[:, -2] > 0.35)


def accuracy(net, f, y):
    return float(((net.score(f) >= 0.5) == y).mean())


def test_training_beats_a_constant_predictor_on_held_out_images():
    f, y = toy_problem(400, seed=1)
    net = train_decision_net(f, y)
    f_test, y_test = toy_problem(400, seed=2)
    constant = max(y_test.mean(), 1 - y_test.mean())
    assert accuracy(net, f_test, y_test) >= constant + 0.2, (accuracy(net, f_test, y_test), constant)
    # and as a probability: lower cross-entropy than the base rate
    p = np.clip(net.score(f_test), 1e-9, 1 - 1e-9)
    bce = -np.mean(y_test * np.log(p) + (1 - y_test) * np.log(1 - p))
    rate = y.mean()
    base = -np.mean(y_test * np.log(rate) + (1 - y_test) * np.log(1 - rate))
    assert bce < 0.6 * base


def test_training_is_deterministic_and_seeded():
    f, y = toy_problem(120, seed=3)
    a, b = train_decision_net(f, y), train_decision_net(f, y)
    for x, z in zip(a.to_dict().values(), b.to_dict().values()):
        np.testing.assert_array_equal(x, z)
    c = train_decision_net(f, y, TrainOptions(seed=1))
    assert not np.array_equal(a.w1, c.w1)


def test_one_label_only_gives_the_constant_net():
    f, _ = toy_problem(10, seed=4)
    net = train_decision_net(f, np.ones(10, bool))
    assert np.all(net.score(f) == net.score(f)[0]) and net.score(f)[0] > 0.99


def test_exit_nets_from_a_memo_and_their_scores():
    f, y = toy_problem(60, seed=5)
    n = len(y)
    # exit 0 right exactly where y holds, the final exit always right
    inter = np.stack([np.stack([y * 4, np.zeros(n)], 1), np.full((n, 2), [4, 0])], 1).astype(np.int64)
    union = np.full((n, 2, 2), [4, 0], np.int64)
    memo = Memo(["exit0", "exit1"], 2, np.array([0.9]), inter, union, {}, [str(i) for i in range(n)], {},
                np.stack([f, f], 1))
    nets = train_exit_nets(memo)
    scores = learned_scores(memo, nets)
    assert scores.shape == (n, 2) and (scores[:, 1] > 0.99).all()
    assert accuracy(nets["exit0"], f, y) > 0.9
    policy = get_policy("learned", net=nets["exit0"], th=0.5)
    np.testing.assert_array_equal(policy.decide(scores[:, 0]), scores[:, 0] >= 0.5)
    memo.features = None
    with pytest.raises(CalibrationError, match="no decision features"):
        train_exit_nets(memo)


def test_a_network_round_trips_through_a_dict():
    net = train_decision_net(*toy_problem(50, seed=6))
    again = DecisionNet.from_dict(net.to_dict())
    f, _ = toy_problem(5, seed=7)
    np.testing.assert_array_equal(again.score(f), net.score(f))
