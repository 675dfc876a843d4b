"""Values exactly at a threshold: a pixel whose confidence equals th_pix counts as confident,
and an image whose c_img equals th_img exits (DESIGN: c >= th_pix, c_img >= th_img), with the
policy in the graph and on the host alike."""


import numpy as np
import pytest

# its package is exported here from a toy net (the Python 3.8 stage has no torch)
nn = pytest.importorskip("torch.nn")

import mesc
from mesc.exporters.export import ExportOptions, export
from mesc.policy import mess_confidence

from policy_cases import tied_logits

SHAPE = (1, 3, 2, 4)  # 8 pixels: c_img is a multiple of 1/8, exact in float32


class LogitsAreTheImage(nn.Module):
    """Two exits whose logits are the (already normalised) input itself, so a test writes the
    logits directly: exit0 = x, exit1 = 2x (the final exit takes what exit0 leaves)."""

    default_input_shape = SHAPE

    def forward(self, x):
        return [x * 1.0, x * 2.0]


@pytest.fixture(scope="module", params=["graph", "host"])
def package(request, tmp_path_factory):
    policy = "top1" if request.param == "graph" else None
    out = tmp_path_factory.mktemp("at_threshold") / request.param
    return export(LogitsAreTheImage(), out, options=ExportOptions(dynamic_batch=True, policy=policy, strides=[1, 1]))


def test_image_at_th_img_exits_and_pixel_at_th_pix_counts(package):
    x = tied_logits([3, 2], *SHAPE[2:])
    want = mess_confidence(x, 0.5, "top1", True, 1)
    assert want.tolist() == [3 / 8, 2 / 8]  # the reference counts the tied pixels
    with mesc.load(package.root) as pipe:
        pipe.set_thresholds("exit0", th_pix=0.5, th_img=3 / 8)
        first, second = pipe(x)
    assert first.confidences == {"exit0": 3 / 8} and first.exit == "exit0"
    assert second.confidences["exit0"] == 2 / 8 and second.exit == "exit1"
    np.testing.assert_array_equal(first.labels, np.zeros(SHAPE[2:], np.int32))
