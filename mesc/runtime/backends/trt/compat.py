"""TensorRT's API for the builder, through polygraphy's loaders (8.5 to 11): version facts,
building a plan, reading what an engine holds.

Kept thin on purpose: everything that can be decided without a GPU lives in ``mesc.targets``
(version parsing and target facts, which the runtime reads too: the runtime never imports
``mesc.engines``), ``mesc.engines.targets`` and ``mesc.engines.build`` and is tested on CPU;
what is here needs TensorRT and runs in the ``trt`` tests.
"""

from __future__ import annotations

import json

from mesc.errors import MescError
from mesc.lazy import require
from mesc.runtime import devices
from mesc.targets import parse_version

PURPOSE = "building TensorRT engines"

# The oldest polygraphy each TensorRT line builds with, newest line first (polygraphy's
# CHANGELOG and sources): 0.48 added NetworkFromOnnxPath(strongly_typed=); 0.49.6 stopped
# passing EXPLICIT_BATCH, deprecated in TensorRT 10 and gone in 11; CreateConfig reads
# layer.precision_is_set, which TensorRT 11 removed, inside a try only from 0.50 (0.50.3 is the
# oldest 0.50 on PyPI; 0.49.27 still fails). PyPI has no 0.47.
POLYGRAPHY_FLOORS = (((11,), (0, 50, 3)), ((10,), (0, 49, 6)), ((0,), (0, 48, 1)))


def tensorrt(purpose: str = PURPOSE):
    return require("tensorrt", extra="trt", purpose=purpose)


def trt_version() -> str:
    return tensorrt().__version__


def engine_facts(index: int = 0) -> dict:
    """What a plan only runs with: the TensorRT version that built it and the GPU (its compute
    capability decides, its name only tunes). The builder records these in every engine's
    metadata; the loader compares them with this machine's before deserialising."""
    version = trt_version()  # a missing TensorRT is named before a missing GPU
    info = devices.device_info(index)
    return {"trt_version": version, "device": info["name"], "compute_capability": info["compute_capability"]}


def polygraphy_floor(trt_version) -> tuple:
    v = parse_version(trt_version)
    return next(floor for line, floor in POLYGRAPHY_FLOORS if v >= line)


def check_polygraphy(trt_version, polygraphy_version: str | None = None) -> None:
    """Refuse a polygraphy too old for the installed TensorRT, naming the one to install."""
    have = polygraphy_version or require("polygraphy", extra="trt", purpose=PURPOSE).__version__
    need = polygraphy_floor(trt_version)
    if parse_version(have)[:3] < need:
        want = ".".join(map(str, need))
        raise MescError(f"TensorRT {trt_version} needs polygraphy >= {want}, this machine has {have}: "
                        f"pip install 'polygraphy>={want}'")


def optimisation_profiles(shapes: dict) -> list | None:
    """polygraphy Profiles for {input: (min, opt, max)} (:func:`mesc.engines.profiles.segment_shapes`);
    None leaves polygraphy's default, right for static shapes only."""
    if not shapes:
        return None
    from polygraphy.backend.trt import Profile

    profile = Profile()
    for name, (lo, opt, hi) in shapes.items():
        profile.add(name, min=lo, opt=opt, max=hi)
    return [profile]


def config_kwargs(plan, trt, shapes=None, calibrator=None, timing_cache=None) -> dict:
    """polygraphy ``CreateConfig`` keywords for a build plan (names valid from 0.47 to 0.53)."""
    return dict(
        fp16=plan.fp16_flag, int8=plan.int8_flag, tf32=plan.tf32, calibrator=calibrator,
        profiles=optimisation_profiles(shapes or {}),
        use_dla=plan.dla_core is not None, allow_gpu_fallback=plan.gpu_fallback,
        load_timing_cache=timing_cache,
        memory_pool_limits={trt.MemoryPoolType.WORKSPACE: plan.workspace_mb << 20},
        # DETAILED keeps per-layer precision and tactic in the engine for the inspector log.
        profiling_verbosity=trt.ProfilingVerbosity.DETAILED,
    )


def pin_policy(plan, policy, pinned: list):
    """The builder-config step that keeps the exit policy's layers FP32 (a weakly typed build
    with the FP16 or INT8 flag: :mod:`.policy_precision`); ``policy`` is (ONNX node -> its
    outputs, the policy's nodes), ``pinned`` receives the layers' names."""
    from mesc.runtime.backends.trt.policy_precision import pin_fp32, policy_layers

    def pin(builder, network, cfg):
        trt = tensorrt()
        layers = pin_fp32(policy_layers(network, *policy), trt)
        pinned.extend(layer.name for layer in layers)
        if not layers:
            return
        # TensorRT 8.2 added OBEY/PREFER_PRECISION_CONSTRAINTS and deprecated STRICT_TYPES
        # (NvInfer.h, release/8.2 and 8.5); its docs ask for exactly one of the two, and newer
        # polygraphy sets PREFER itself on DLA builds. Obey: a pinned layer never runs in FP16.
        cfg.clear_flag(trt.BuilderFlag.PREFER_PRECISION_CONSTRAINTS)
        cfg.set_flag(trt.BuilderFlag.OBEY_PRECISION_CONSTRAINTS)
        if plan.dla_core is not None:  # DLA has no FP32: the policy runs on the GPU
            for layer in layers:
                cfg.set_device_type(layer, trt.DeviceType.GPU)

    return pin


def _config(plan, shapes, calibrator, timing_cache, steps=()):
    from polygraphy.backend.trt import CreateConfig, PostprocessConfig

    config = CreateConfig(**config_kwargs(plan, tensorrt(), shapes, calibrator, timing_cache))
    if plan.dla_core:  # polygraphy always picks core 0
        def use_core(builder, network, cfg):
            cfg.DLA_core = plan.dla_core

        config = PostprocessConfig(config, use_core)
    for step in steps:
        config = PostprocessConfig(config, step)
    return config


def build_engine(onnx_path, plan, engine_path, calib_feeds=None, calib_cache=None, timing_cache=None,
                 shapes=None, policy=None) -> dict:
    """Parse, build and save one segment's engine (``shapes``: its inputs' optimisation profile;
    ``policy``: (every ONNX node -> its outputs, the policy's nodes), whose layers a weakly typed
    FP16/INT8 build keeps FP32); returns its I/O (read from the engine), the inspector's layer
    information and how many policy layers were pinned to FP32 (None where nothing is pinned:
    FP32 and strongly typed builds)."""
    from polygraphy.backend.trt import Calibrator, EngineBytesFromNetwork, EngineFromBytes, NetworkFromOnnxPath

    calibrator = None
    if plan.implicit_int8:
        calibrator = Calibrator(list(calib_feeds), cache=str(calib_cache) if calib_cache else None)
    pinned: list = []
    steps = [pin_policy(plan, policy, pinned)] if plan.pins_policy_fp32 and policy else []
    network = NetworkFromOnnxPath(str(onnx_path), strongly_typed=plan.strongly_typed)
    blob = EngineBytesFromNetwork(network, config=_config(plan, shapes, calibrator, timing_cache, steps),
                                  save_timing_cache=timing_cache)()
    data = bytes(blob)
    with open(engine_path, "wb") as f:
        f.write(data)
    engine = EngineFromBytes(data)()
    return {"io": engine_io(engine), "layers": layer_information(engine),
            "policy_fp32_layers": len(pinned) if plan.pins_policy_fp32 else None}


def dtype_name(trt_dtype) -> str:
    """'float', 'half', 'bool', ...: a TensorRT ``DataType`` by its name ("DataType.FLOAT")."""
    return str(trt_dtype).split(".")[-1].lower()


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
            "dtype": dtype_name(engine.get_tensor_dtype(name)),
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
