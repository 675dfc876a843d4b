"""The calibration modules' old import paths still work for one release, with a warning."""

import importlib

import pytest

MOVED = [
    ("mesc.calibration.report", "calibrate", "mesc.calibration.exits.calibration"),
    ("mesc.calibration.report", "write_configuration", "mesc.calibration.exits.manifest"),
    ("mesc.calibration.report", "exit_settings", "mesc.calibration.exits.manifest"),
    ("mesc.calibration.report", "format_report", "mesc.calibration.exits.report"),
    ("mesc.calibration.memo", "evaluate", "mesc.calibration.exits.memo"),
    ("mesc.calibration.memo", "class_counts", "mesc.metrics"),
    ("mesc.calibration.search", "Searcher", "mesc.calibration.exits.search"),
    ("mesc.calibration.search", "miou", "mesc.metrics"),
    ("mesc.calibration.int8", "check_qdq", "mesc.calibration.precision.int8"),
    ("mesc.calibration.fp16", "to_fp16", "mesc.calibration.precision.fp16"),
    ("mesc.calibration.chain", "OrtChain", "mesc.runtime.backends.onnxrt.chain"),
    ("mesc.calibration.chain", "segment_inputs", "mesc.calibration.precision.feeds"),
    ("mesc.calibration.chain", "policy_tail", "mesc.calibration.precision.nodes"),
    ("mesc.calibration.images", "load_calibration_batches", "mesc.calibration.precision.images"),
]


@pytest.mark.parametrize("old, name, new", MOVED)
def test_old_path_warns_and_returns_the_same_object(old, name, new):
    module = importlib.import_module(old)
    with pytest.warns(DeprecationWarning, match=f"{old}.{name} moved to {new}.{name}"):
        got = getattr(module, name)
    assert got is getattr(importlib.import_module(new), name)


def test_precision_package_keeps_its_old_names():
    from mesc.calibration.precision import format_report, prepare  # noqa: F401 - the old module's API
    from mesc.metrics import label_miou

    with pytest.warns(DeprecationWarning, match="mesc.metrics.label_miou"):
        from mesc.calibration.precision import miou
    assert miou is label_miou


def test_unknown_and_removed_names_still_fail():
    with pytest.raises(ImportError):
        from mesc.calibration.memo import mess_grid  # noqa: F401 - removed: mesc.policy.mess_confidence_grid
    with pytest.raises(AttributeError):
        importlib.import_module("mesc.calibration.report").no_such_name
