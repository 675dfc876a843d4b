"""ONNX Runtime runner on CUDA (marked gpu): IOBinding on the device gives the CPU's results."""

import pytest

import mesc
from runtime_checks import assert_same_decisions, needs_ort_cuda



@pytest.mark.gpu
@needs_ort_cuda
def test_ort_cuda_iobinding_matches_cpu(pkg_graph, images):
    with mesc.load(pkg_graph, device="cpu") as cpu, mesc.load(pkg_graph, device="cuda:0") as gpu:
        assert_same_decisions(cpu, gpu, images)
