"""Assertions and measurements the runtime and calibration tests share."""

import pytest


def assert_same_decisions(ref, test, images, th=0.5):
    """Both pipelines at the same thresholds take the same exits with (almost) the same labels:
    another backend or device must not change what the policy decides."""
    for k in range(len(ref.exit_names)):
        for p in (ref, test):
            p.set_thresholds(k, th_pix=th, th_img=th)
    a, b = ref(images), test(images)
    assert [r.exit for r in a] == [r.exit for r in b]
    for ra, rb in zip(a, b):
        assert (ra.labels == rb.labels).mean() > 0.999


def assert_same_results(ref, test):
    """Two runs' results (lists of Result) agree: the same exits, labels and confidences (within
    1e-6: two devices or paths may round the last bit differently), and logits where asked."""
    import numpy as np

    assert [r.exit for r in ref] == [r.exit for r in test]
    for a, b in zip(ref, test):
        np.testing.assert_array_equal(a.labels, b.labels)
        assert a.confidences.keys() == b.confidences.keys()
        for k, v in a.confidences.items():
            assert (v is None and b.confidences[k] is None) or abs(v - b.confidences[k]) <= 1e-6
        if a.logits is not None:
            np.testing.assert_allclose(a.logits, b.logits, rtol=0, atol=1e-6)


def spread_thresholds(pipe, images, th_pix=None) -> int:
    """Set each early exit's th_img between two of the confidences of the images still running
    there (at the widest gap, leaving one for the later exits), so that an input-dependent call on
    ``images`` takes several exits and its batch compacts. Returns how many exits the images
    take. ``th_pix`` first, where given (a toy's random weights are sure of few pixels)."""
    import numpy as np

    if th_pix is not None:
        for k in range(len(pipe.exit_names)):
            pipe.set_thresholds(k, th_pix=th_pix)
    steps = list(pipe.anytime(images))
    conf = [np.array([r.confidences[ex] for r in step]) for ex, step in zip(pipe.exit_names, steps)]
    remaining, taken = np.arange(len(images)), set()
    for k in range(len(conf) - 1):
        v = np.sort(conf[k][remaining])
        if len(v) < 2 or v[-2] == v[0]:
            pipe.set_thresholds(k, th_img=1.0)  # nothing to tell apart: nobody leaves here
            continue
        i = int(np.argmax(np.diff(v[:-1]))) if len(v) > 2 else 0
        th = float(v[i] + v[i + 1]) / 2
        pipe.set_thresholds(k, th_img=th)
        taken |= {k} if (conf[k][remaining] >= th).any() else set()
        remaining = remaining[conf[k][remaining] < th]
    return len(taken) + bool(len(remaining))


def input_dependent_figures(pipe, data, classes):
    """(mIoU, {exit: fraction of images}) of ``pipe`` run input-dependently, as the package's
    manifest (thresholds, enabled exits) or ``pipe.set_thresholds`` says, over the labelled
    folder ``data``: what calibration predicts for the configuration it chose."""
    import numpy as np

    from mesc.calibration.exits.memo import load_calibration_set
    from mesc.evaluation.metrics import class_counts, miou

    _, _, h, w = pipe.pkg.input.shape
    items = load_calibration_set(data, (h, w), classes)
    results = pipe([im for _, im, _ in items])
    inter, union = np.zeros(classes), np.zeros(classes)
    for r, (_, _, mask) in zip(results, items):
        i, u = class_counts(r.labels, mask, classes)
        inter += i
        union += u
    fractions = {e: sum(r.exit == e for r in results) / len(results) for e in pipe.exit_names}
    return float(miou(inter, union)), fractions


def _ort_has_cuda() -> bool:
    import onnxruntime as ort

    return "CUDAExecutionProvider" in ort.get_available_providers()


# for tests that run ONNX Runtime on a GPU
needs_ort_cuda = pytest.mark.skipif(not _ort_has_cuda(),
                                    reason="onnxruntime has no CUDA provider here (pip install 'mesc[gpu]')")
