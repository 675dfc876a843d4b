"""A toy package (three exits, in-graph policy, dynamic batch) and uint8 images that spread over
its exits, for the served model's checks without a server."""

import numpy as np
import pytest


@pytest.fixture(scope="session")
def served_pkg(tmp_path_factory):
    pytest.importorskip("torch")
    from toys import SHAPE, three_exits

    from mesc.exporters.export import ExportOptions, export

    out = tmp_path_factory.mktemp("served") / "toy"
    return export(three_exits(), out, options=ExportOptions(input_shape=SHAPE, strides=[2, 4, 4], dynamic_batch=True,
                                                            policy="top1", verify=False)).root


@pytest.fixture(scope="session")
def uint8_images():
    pytest.importorskip("torch")
    from toys import SHAPE

    rng = np.random.default_rng(5)
    return rng.integers(0, 256, (6, SHAPE[2], SHAPE[3], SHAPE[1]), dtype=np.uint8)
