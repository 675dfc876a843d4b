"""ONNX Runtime runner on CUDA (marked gpu): IOBinding on the device gives the CPU's results."""

import pytest

import mesc


def _has_ort_cuda():
    import onnxruntime as ort

    return "CUDAExecutionProvider" in ort.get_available_providers()


@pytest.mark.gpu
@pytest.mark.skipif(not _has_ort_cuda(), reason="onnxruntime has no CUDA provider here (pip install 'mesc[gpu]')")
def test_ort_cuda_iobinding_matches_cpu(pkg_graph, images):
    with mesc.load(pkg_graph, device="cpu") as cpu, mesc.load(pkg_graph, device="cuda:0") as gpu:
        for k in range(3):
            for p in (cpu, gpu):
                p.set_thresholds(k, th_pix=0.5, th_img=0.5)
        a, b = cpu(images), gpu(images)
    assert [r.exit for r in a] == [r.exit for r in b]
    for ra, rb in zip(a, b):
        assert (ra.labels == rb.labels).mean() > 0.999
