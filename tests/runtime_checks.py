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
