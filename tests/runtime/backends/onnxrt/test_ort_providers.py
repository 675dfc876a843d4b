"""Execution providers on the CPU: the TensorRT EP options per onnxruntime version, the check
that a session got the providers asked for, the CUDA library preload, helper graphs off the
TensorRT EP. No machine here can create the CUDA or TensorRT providers: onnxruntime's provider
list and the session are stood in by plain data."""

import pytest

from mesc.errors import MescError
from mesc.runtime.backends.onnxrt import loader, providers
from mesc.runtime.backends.onnxrt.providers import (CPU, CUDA, TENSORRT, check_providers, helper_providers,
                                                    ort_trt_provider_options, providers_for, tensorrt_ep_options)
from mesc.runtime.devices import Device
from mesc.runtime.errors import DeviceError

# Every TensorRT EP key in the onnxruntime-gpu wheels' pybind module, per release (strings of
# onnxruntime_pybind11_state.so): what mesc may send to each.
ACCEPTED = {
    "1.16.3": {"device_id", "trt_max_workspace_size", "trt_fp16_enable", "trt_int8_enable", "trt_dla_enable",
               "trt_dla_core", "trt_engine_cache_enable", "trt_engine_cache_path", "trt_timing_cache_enable",
               "trt_force_timing_cache", "trt_min_subgraph_size", "trt_max_partition_iterations",
               "trt_int8_calibration_table_name", "trt_int8_use_native_calibration_table", "trt_dump_subgraphs",
               "trt_engine_decryption_enable", "trt_engine_decryption_lib_path", "trt_force_sequential_engine_build",
               "trt_context_memory_sharing_enable", "trt_layer_norm_fp32_fallback", "trt_detailed_build_log",
               "trt_build_heuristics_enable", "trt_sparsity_enable", "trt_builder_optimization_level",
               "trt_auxiliary_streams", "trt_tactic_sources", "trt_extra_plugin_lib_paths", "trt_profile_min_shapes",
               "trt_profile_max_shapes", "trt_profile_opt_shapes", "trt_cuda_graph_enable"},
}
ACCEPTED["1.17.0"] = ACCEPTED["1.16.3"] | {"trt_timing_cache_path", "trt_dump_ep_context_model",
                                          "trt_ep_context_file_path", "trt_ep_context_embed_mode",
                                          "trt_engine_cache_prefix"}
ACCEPTED["1.31.1"] = ACCEPTED["1.17.0"] | {"trt_bf16_enable", "trt_engine_hw_compatible", "trt_onnx_bytestream",
                                          "trt_onnx_bytestream_size", "trt_onnx_model_folder_path",
                                          "trt_op_types_to_exclude", "trt_preview_features",
                                          "trt_weight_stripped_engine_enable"}

CUDA0 = Device("cuda", 0)


@pytest.mark.parametrize("version", sorted(ACCEPTED))
@pytest.mark.parametrize("precision", [None, "fp16", "int8"])
def test_tensorrt_ep_options_use_only_keys_the_release_has(version, precision, tmp_path):
    opts = tensorrt_ep_options(precision, tmp_path, device_id=1, version=version, workspace_mb=256, dla_core=0)
    assert set(opts) <= ACCEPTED[version]
    assert opts["device_id"] == 1 and opts["trt_max_workspace_size"] == 256 << 20
    assert opts["trt_fp16_enable"] == (precision == "fp16") and opts["trt_int8_enable"] == (precision == "int8")
    assert opts["trt_engine_cache_enable"] and opts["trt_engine_cache_path"] == str(tmp_path)
    assert opts["trt_timing_cache_enable"]
    # 1.16 has no key for the timing cache's folder: sending it makes the whole EP fall back
    assert opts.get("trt_timing_cache_path") == (None if version == "1.16.3" else str(tmp_path))
    # onnxruntime sends str(value); the EP takes exactly 'True'/'False' for its flags
    assert all(str(v) in ("True", "False") for k, v in opts.items() if k.endswith("_enable"))


def test_ort_trt_provider_options(tmp_path):
    providers = ort_trt_provider_options("xavier", "fp16", tmp_path, dla_core=1, trt_version="8.5.2",
                                         ort_version="1.31.1")
    name, opts = providers[0]
    assert name == "TensorrtExecutionProvider" and providers[-1] == "CPUExecutionProvider"
    assert opts["trt_fp16_enable"] and not opts["trt_int8_enable"]
    assert opts["trt_dla_enable"] and opts["trt_dla_core"] == 1
    assert opts["trt_engine_cache_enable"] and opts["trt_engine_cache_path"] == str(tmp_path)
    assert opts["trt_timing_cache_path"] == str(tmp_path)
    assert opts["trt_max_workspace_size"] == 1024 << 20
    _, opts = ort_trt_provider_options("gtx1080ti", "int8", tmp_path, workspace_mb=512, ort_version="1.16.3")[0]
    assert opts["trt_int8_enable"] and not opts["trt_fp16_enable"] and "trt_dla_enable" not in opts
    assert opts["trt_max_workspace_size"] == 512 << 20 and "trt_timing_cache_path" not in opts
    with pytest.raises(MescError, match="no fast FP16"):
        ort_trt_provider_options("gtx1080ti", "fp16", tmp_path)
    with pytest.raises(MescError, match="implicit calibration"):
        ort_trt_provider_options("xavier", "int8", tmp_path, dla_core=0, trt_version="8.5.2")


class _Session:
    """What check_providers reads of an InferenceSession."""

    def __init__(self, got):
        self.got = got

    def get_providers(self):
        return self.got


def test_a_fallback_is_refused_naming_what_was_asked_and_what_ran():
    asked = [(TENSORRT, {}), (CUDA, {"device_id": 0}), CPU]
    check_providers(_Session([TENSORRT, CUDA, CPU]), asked, "head0")
    with pytest.raises(DeviceError, match=r"fell back to \['CUDAExecutionProvider', 'CPUExecutionProvider'\] "
                                          r"for head0: TensorrtExecutionProvider was asked for"):
        check_providers(_Session([CUDA, CPU]), asked, "head0")
    with pytest.raises(DeviceError, match="CUDAExecutionProvider was asked for.*CUDA/cuDNN"):
        check_providers(_Session([CPU]), asked[1:], "chunk0")
    check_providers(_Session([CPU]), [CPU], "chunk0")


@pytest.fixture
def fake_cuda(monkeypatch):
    """onnxruntime-gpu with the TensorRT EP as far as mesc asks: the provider list, the device
    count check, and ``preload_dlls`` counting its calls."""
    rt = providers.ort()
    calls = []
    monkeypatch.setattr(rt, "get_available_providers", lambda: [TENSORRT, CUDA, CPU])
    monkeypatch.setattr(rt, "preload_dlls", lambda *a, **k: calls.append((a, k)), raising=False)
    monkeypatch.setattr(providers, "check_cuda_device", lambda dev: None)
    providers.preload_cuda_libraries.cache_clear()
    yield calls
    providers.preload_cuda_libraries.cache_clear()


def test_cuda_libraries_preloaded_once_and_only_for_cuda(fake_cuda, tmp_path):
    assert providers_for(Device("cpu")) == [CPU] and fake_cuda == []
    chosen = providers_for(CUDA0, tensorrt_ep=True, precision="fp16", cache_dir=tmp_path)
    providers_for(CUDA0)
    assert fake_cuda == [((), {})]
    assert [providers.provider_name(p) for p in chosen] == [TENSORRT, CUDA, CPU]
    assert chosen[0][1]["trt_fp16_enable"] and chosen[0][1]["trt_engine_cache_path"] == str(tmp_path)


def test_onnxruntime_without_preload_dlls_is_fine(fake_cuda, monkeypatch):
    monkeypatch.delattr(providers.ort(), "preload_dlls", raising=False)  # onnxruntime < 1.21
    assert [providers.provider_name(p) for p in providers_for(CUDA0)] == [CUDA, CPU]


def test_helper_graphs_run_on_cuda_not_on_the_tensorrt_ep(monkeypatch):
    asked = [(TENSORRT, {"device_id": 0}), (CUDA, {"device_id": 0}), CPU]
    assert helper_providers(asked) == asked[1:]
    seen = []
    monkeypatch.setattr(loader, "open_session", lambda model, so, provs, dev, what: seen.append(provs))
    loader.Sessions({}, asked, CUDA0).helper(b"", "the row gather")
    assert seen == [asked[1:]]
