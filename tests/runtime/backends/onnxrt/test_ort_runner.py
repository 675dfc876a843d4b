"""ONNX Runtime runner on CUDA (marked gpu): IOBinding on the device gives the CPU's results."""

import pytest

import mesc
from runtime_checks import assert_same_decisions


def _has_ort_cuda():
    import onnxruntime as ort

    return "CUDAExecutionProvider" in ort.get_available_providers()


@pytest.mark.gpu
@pytest.mark.skipif(not _has_ort_cuda(), reason="onnxruntime has no CUDA provider here (pip install 'mesc[gpu]')")
def test_ort_cuda_iobinding_matches_cpu(pkg_graph, images):
    with mesc.load(pkg_graph, device="cpu") as cpu, mesc.load(pkg_graph, device="cuda:0") as gpu:
        assert_same_decisions(cpu, gpu, images)
