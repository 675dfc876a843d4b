import pytest


def export_candidates(model, dest):
    """``model`` (the candidate-head contract: an exit point's entry may be a list of candidate
    logits) exported by ``mesc export`` as a package with candidates (``exit{p}c{j}`` at a point
    with several heads, candidate 0 of every point enabled)."""
    from mesc.exporters.export import ExportOptions, export

    x = __import__("torch").zeros(model.default_input_shape)
    count = sum(len(o) if isinstance(o, (list, tuple)) else 1 for o in model(x))
    pkg = export(model, dest, options=ExportOptions(policy="top1", dynamic_batch=True, strides=[2] * count,
                                                    verify=False))
    return pkg.root


def fit_briefly(model, data_dir, steps: int = 60):
    """``model`` trained for ``steps`` full-batch Adam steps on every exit (candidates too) of
    a labelled folder: enough for heads that differ in accuracy and confidence, so that a
    calibration mixes exits. Single-threaded, so the result does not depend on the machine's
    cores."""
    import numpy as np
    import torch

    from mesc.calibration.exits.memo import load_calibration_set
    from mesc.training import exit_losses, normalization_of, to_input

    _, _, h, w = model.default_input_shape
    items = load_calibration_set(data_dir, (h, w), 6)
    x = to_input(np.stack([im for _, im, _ in items]), normalization_of(model))
    y = torch.from_numpy(np.stack([mask for _, _, mask in items]).astype(np.int64))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        torch.manual_seed(0)
        opt = torch.optim.Adam(model.parameters(), 1e-2)
        model.train()
        for _ in range(steps):
            flat = [t for out in model(x) for t in (out if isinstance(out, (list, tuple)) else [out])]
            loss = sum(exit_losses(flat, y))
            opt.zero_grad()
            loss.backward()
            opt.step()
    finally:
        torch.set_num_threads(threads)
    return model.eval()


@pytest.fixture(scope="session")
def candidate_package(tmp_path_factory):
    """A toy package with two candidate heads at exit point 0 (``exit0c0``: 1x1 conv,
    ``exit0c1``: 3x3 head), ``exit1`` and the final ``exit2``, briefly trained on synthetic
    scenes; 6 classes, in-graph top-1 policy, dynamic batch. Copy it before writing to it."""
    pytest.importorskip("torch")
    from toys import candidate_net

    from mesc.datasets.synthetic import generate

    train = generate(tmp_path_factory.mktemp("candidates_train") / "data", 24, seed=11, size=(32, 64))
    model = fit_briefly(candidate_net(), train)
    return export_candidates(model, tmp_path_factory.mktemp("calib_candidates") / "pkg")
