"""TensorRT's API for the builder, through polygraphy's loaders (8.5 to 11): version facts,
building a plan, reading what an engine holds.

Kept thin on purpose: everything that can be decided without a GPU lives in
``mesc.engines.targets`` and ``mesc.engines.build`` and is tested on CPU; what is here needs
TensorRT and runs in the ``trt`` tests.
"""

from __future__ import annotations

import json

from mesc.lazy import require
from mesc.runtime import devices

PURPOSE = "building TensorRT engines"


def tensorrt(purpose: str = PURPOSE):
    return require("tensorrt", extra="trt", purpose=purpose)


def trt_version() -> str:
    return tensorrt().__version__


def engine_facts(index: int = 0) -> dict:
    """What a plan only runs with: the TensorRT version that built it and the GPU (its compute
    capability decides, its name only tunes). The builder records these in every engine's
    metadata; the loader compares them with this machine's before deserialising."""
    info = devices.device_info(index)
    return {"trt_version": trt_version(), "device": info["name"], "compute_capability": info["compute_capability"]}


def _config(plan, calibrator, timing_cache):
    trt = tensorrt()
    from polygraphy.backend.trt import CreateConfig, PostprocessConfig

    config = CreateConfig(
        fp16=plan.fp16_flag, int8=plan.int8_flag, calibrator=calibrator,
        use_dla=plan.dla_core is not None, allow_gpu_fallback=plan.gpu_fallback,
        load_timing_cache=timing_cache,
        memory_pool_limits={trt.MemoryPoolType.WORKSPACE: plan.workspace_mb << 20},
        # DETAILED keeps per-layer precision and tactic in the engine for the inspector log.
        profiling_verbosity=trt.ProfilingVerbosity.DETAILED,
    )
    if plan.dla_core:  # polygraphy always picks core 0
        def use_core(builder, network, cfg):
            cfg.DLA_core = plan.dla_core

        config = PostprocessConfig(config, use_core)
    return config


def build_engine(onnx_path, plan, engine_path, calib_feeds=None, calib_cache=None, timing_cache=None) -> dict:
    """Parse, build and save one segment's engine; returns its I/O (read from the engine) and
    the inspector's layer information."""
    from polygraphy.backend.trt import Calibrator, EngineBytesFromNetwork, EngineFromBytes, NetworkFromOnnxPath

    calibrator = None
    if plan.implicit_int8:
        calibrator = Calibrator(list(calib_feeds), cache=str(calib_cache) if calib_cache else None)
    network = NetworkFromOnnxPath(str(onnx_path), strongly_typed=plan.strongly_typed)
    blob = EngineBytesFromNetwork(network, config=_config(plan, calibrator, timing_cache),
                                  save_timing_cache=timing_cache)()
    data = bytes(blob)
    with open(engine_path, "wb") as f:
        f.write(data)
    engine = EngineFromBytes(data)()
    return {"io": engine_io(engine), "layers": layer_information(engine)}


def engine_io(engine) -> list[dict]:
    """I/O names, shapes and dtypes as the engine has them (ArgMax is INT32 on 8.5, INT64 on 10)."""
    trt = tensorrt()
    out = []
    for i in range(engine.num_io_tensors):
        name = engine.get_tensor_name(i)
        out.append({
            "name": name,
            "mode": "input" if engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT else "output",
            "shape": list(engine.get_tensor_shape(name)),
            "dtype": str(engine.get_tensor_dtype(name)).split(".")[-1].lower(),
        })
    return out


def layer_information(engine) -> dict:
    trt = tensorrt()
    inspector = engine.create_engine_inspector()
    return json.loads(inspector.get_engine_information(trt.LayerInformationFormat.JSON))


def load_engine(path):
    from polygraphy.backend.trt import EngineFromBytes

    with open(path, "rb") as f:
        return EngineFromBytes(f.read())()
