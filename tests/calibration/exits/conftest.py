import pytest


@pytest.fixture(scope="session")
def policy_package(tmp_path_factory):
    """A toy package (6 classes, in-graph top-1 policy, dynamic batch) the calibration tests
    share; copy it before writing to it."""
    pytest.importorskip("torch")
    from toys import skipnet

    from mesc.exporters.export import ExportOptions, export

    pkg = export(skipnet(num_classes=6), tmp_path_factory.mktemp("calib") / "pkg",
                 options=ExportOptions(policy="top1", dynamic_batch=True, strides=[2, 2, 2], verify=False))
    return pkg.root
