"""ONNX Runtime runner on CUDA (marked gpu): IOBinding on the device gives the CPU's results."""

import pytest

import mesc
from runtime_checks import assert_same_decisions, needs_ort_cuda



@pytest.mark.gpu
@needs_ort_cuda
def test_ort_cuda_iobinding_matches_cpu(pkg_graph, images):
    with mesc.load(pkg_graph, device="cpu") as cpu, mesc.load(pkg_graph, device="cuda:0") as gpu:
        assert_same_decisions(cpu, gpu, images)


@pytest.mark.gpu
@needs_ort_cuda
def test_ort_cuda_stream_path_graphs_and_device_tensors(pkg_graph, images):
    """The stream path on a real GPU: CUDA graphs on and off give the CPU's results; a torch CUDA
    batch goes in without a host copy, and labels come back on the device by DLPack."""
    import numpy as np
    import torch

    with mesc.load(pkg_graph, device="cpu") as cpu, mesc.load(pkg_graph, device="cuda:0") as gpu, \
            mesc.load(pkg_graph, device="cuda:0", cuda_graphs=False) as plain:
        path = gpu.runner.path()
        assert path["io"] == "stream", path  # onnxruntime >= 1.17 with CUDA
        for _ in range(3):  # uncaptured, captured, replayed
            assert_same_decisions(cpu, gpu, images)
            assert_same_decisions(cpu, plain, images)
        if torch.cuda.is_available():
            x = torch.from_numpy(images[:2]).cuda()
            got, ref = gpu(x, device_output=True), cpu(images[:2])
            for g, r in zip(got, ref):
                assert g.exit == r.exit
                assert (torch.from_dlpack(g.labels).cpu().numpy() == r.labels).mean() > 0.999
