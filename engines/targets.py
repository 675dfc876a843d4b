"""Deployment targets and the build plan: which TensorRT mode builds which precision where.

Pure logic (no TensorRT import), so every refusal and every plan is tested on CPU. The engine
builder asks :func:`plan_build` what to do and only then touches TensorRT.

The decisions, per TensorRT version:

* TensorRT >= 10 builds strongly typed: precision comes from the ONNX graph (FP16 casts, Q/DQ),
  never from builder flags (deprecated in 10.12, removed in 11 together with the calibrators).
* TensorRT 8.x builds weakly typed: the FP16/INT8 builder flags enable the lower precisions;
  an INT8 graph still carries explicit Q/DQ, except on DLA where 8.x has no explicit
  quantization: there the FP32 graph is calibrated implicitly (a calibrator and its cache).
* Pascal (sm_61) has no fast FP16; FP16 engines there are slower than FP32.
* DLA: TensorRT 10.7 was the last release with DLA before 11.4.1, which brings it back on
  Jetson AGX Orin only (JetPack 7.2.2; 11.4.0 has DLA on Windows on ARM only).
* FP32 engines use TF32 (polygraphy clears it unless asked), unless the user opts out.
"""

from __future__ import annotations

import dataclasses
import re

from mesc.errors import MescError

PRECISIONS = ("fp32", "fp16", "int8")
# DLA was dropped from TensorRT after 10.7 and came back (strongly typed) in 11.4.1, on Orin only.
_DLA_GAP = ((10, 8), (11, 4, 1))
_DLA_ON_TRT11 = "8.7"  # Jetson AGX Orin's compute capability
DEFAULT_MAX_BATCH = 8


def parse_version(text) -> tuple[int, ...]:
    """'8.5.2.2' -> (8, 5, 2, 2); a tuple passes through. Suffixes like 'post1' are ignored."""
    if isinstance(text, tuple):
        return text
    nums = re.findall(r"\d+", str(text).split("+")[0])
    if not nums:
        raise MescError(f"cannot read a TensorRT version from {text!r} (expected e.g. 8.5.2)")
    return tuple(int(n) for n in nums[:4])


def _fmt(v: tuple) -> str:
    return ".".join(str(x) for x in v)


@dataclasses.dataclass(frozen=True)
class Target:
    name: str
    compute_capabilities: tuple[str, ...] | None  # e.g. ("6.1",); None: whatever GPU is present
    trt_min: str = "8.5"
    trt_max: str | None = None  # exclusive upper bound, e.g. "8.7" admits every 8.6.x
    precisions: tuple[str, ...] = PRECISIONS
    dla_cores: int = 0
    fast_fp16: bool = True
    workspace_mb: int = 2048
    max_batch: int = DEFAULT_MAX_BATCH  # batch range of engines built from a dynamic-batch package
    notes: str = ""

    def trt_ok(self, version) -> bool:
        v = parse_version(version)
        if v < parse_version(self.trt_min):
            return False
        return self.trt_max is None or v < parse_version(self.trt_max)

    def trt_range(self) -> str:
        return f">= {self.trt_min}" + (f", < {self.trt_max}" if self.trt_max else "")


_TARGETS: dict[str, Target] = {}


def register_target(target: Target, replace: bool = False) -> Target:
    """Add a target (e.g. a new Jetson); refuses to shadow an existing name unless ``replace``."""
    if not re.fullmatch(r"[a-z0-9][a-z0-9_.]*", target.name):
        raise MescError(f"target name {target.name!r} must be lower-case letters, digits, '_' or '.'")
    if target.name in _TARGETS and not replace:
        raise MescError(f"target '{target.name}' is already registered; pass replace=True to redefine it")
    bad = set(target.precisions) - set(PRECISIONS)
    if bad:
        raise MescError(f"target '{target.name}': unknown precisions {sorted(bad)}; expected a subset of {PRECISIONS}")
    _TARGETS[target.name] = target
    return target


def get_target(name: str) -> Target:
    try:
        return _TARGETS[name]
    except KeyError:
        raise MescError(f"unknown target '{name}'; known targets: {', '.join(sorted(_TARGETS))}") from None


def list_targets() -> dict[str, Target]:
    return dict(_TARGETS)


register_target(Target(
    "gtx1080ti", ("6.1",), trt_min="8.5", trt_max="8.7", precisions=("fp32", "int8"), fast_fp16=False,
    workspace_mb=4096,
    notes="Pascal sm_61, TensorRT 8.6 at most; no fast FP16 (1/64 rate): INT8 via DP4A or FP32"))
register_target(Target(
    "xavier", ("7.2",), trt_min="8.5", trt_max="9", dla_cores=2, workspace_mb=1024,
    notes="Jetson AGX Xavier, JetPack 5.1 (TensorRT 8.5.2); 2 DLA cores (FP16/INT8, static shapes, "
          "implicit INT8 only, GPU fallback)"))
register_target(Target(
    "orin", ("8.7",), trt_min="8.6", trt_max="12", dla_cores=2, workspace_mb=2048,
    notes="Jetson AGX Orin, JetPack 6 (TensorRT 8.6 / 10.x); 2 DLA cores"))
register_target(Target(
    "host", None, trt_min="8.5", trt_max="12", workspace_mb=4096,
    notes="whatever GPU and TensorRT this machine has; strongly typed on TensorRT >= 10"))


@dataclasses.dataclass(frozen=True)
class BuildPlan:
    """What the builder does for one (target, TensorRT, precision, DLA) request."""

    target: str
    precision: str
    trt_version: str
    strongly_typed: bool
    source: str  # which ONNX graphs to parse: "fp32", or a prepared precision "fp16" / "int8"
    fp16_flag: bool = False
    int8_flag: bool = False
    implicit_int8: bool = False  # calibrator + cache on the FP32 graph (DLA on TensorRT 8.x)
    dla_core: int | None = None
    gpu_fallback: bool = False
    tf32: bool = False
    workspace_mb: int = 2048
    notes: tuple[str, ...] = ()

    @property
    def variant(self) -> str:
        """Directory and manifest key: 'int8', or 'int8-dla0' for a DLA build."""
        return self.precision + (f"-dla{self.dla_core}" if self.dla_core is not None else "")

    def as_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["notes"] = list(self.notes)
        return d


def _dla_refusal(t: Target, v: tuple) -> str | None:
    """Why TensorRT ``v`` cannot build DLA engines for ``t`` (None: it can)."""
    if _DLA_GAP[0] <= v < _DLA_GAP[1]:
        return (f"TensorRT {_fmt(v)} has no DLA support on Jetson (10.7 was the last before 11.4.1); "
                f"use the JetPack's own TensorRT or drop --dla-core")
    if v >= _DLA_GAP[1] and _DLA_ON_TRT11 not in (t.compute_capabilities or ()):
        return (f"TensorRT {_fmt(v)} has DLA on Jetson AGX Orin (sm_87, JetPack 7.2.2 or later) only, "
                f"not on target '{t.name}'; drop --dla-core")
    return None


def check_build_request(target, precision: str, trt_version, dla_core: int | None = None,
                        compute_capability: str | None = None, allow_slow: bool = False) -> list[str]:
    """Refuse a request that cannot give a sound engine; returns warnings for the ones that can.

    ``trt_version`` / ``compute_capability`` None: not known yet, those checks are skipped.

    Raises :class:`MescError` with the reason and what to do instead.
    """
    t = target if isinstance(target, Target) else get_target(target)
    if precision not in PRECISIONS:
        raise MescError(f"--precision {precision!r}: expected one of {', '.join(PRECISIONS)}")
    v = parse_version(trt_version) if trt_version is not None else None
    warnings = []
    if v is not None and not t.trt_ok(v):
        raise MescError(f"target '{t.name}' needs TensorRT {t.trt_range()}, this machine has {_fmt(v)} ({t.notes})")
    if compute_capability is not None and t.compute_capabilities and compute_capability not in t.compute_capabilities:
        raise MescError(
            f"target '{t.name}' is sm_{'/'.join(c.replace('.', '') for c in t.compute_capabilities)}, but this GPU "
            f"is sm_{compute_capability.replace('.', '')}: TensorRT engines only run on the GPU model they were built "
            f"on; build on the target device or use --target host")
    if precision not in t.precisions:
        if precision == "fp16" and not t.fast_fp16:
            if not allow_slow:
                raise MescError(
                    f"target '{t.name}' has no fast FP16 (Pascal runs FP16 at a fraction of FP32 speed): use "
                    f"--precision int8 (DP4A) or fp32, or pass --allow-slow to build FP16 anyway")
            warnings.append(f"FP16 on '{t.name}' is slower than FP32 (no fast FP16); built because of --allow-slow")
        else:
            raise MescError(f"target '{t.name}' does not support {precision}; it supports {', '.join(t.precisions)}")
    if dla_core is not None:
        if t.dla_cores == 0:
            raise MescError(f"--dla-core {dla_core}: target '{t.name}' has no DLA (only Jetson Xavier/Orin do)")
        if not 0 <= dla_core < t.dla_cores:
            raise MescError(f"--dla-core {dla_core}: target '{t.name}' has DLA cores 0..{t.dla_cores - 1}")
        if precision == "fp32":
            raise MescError("--dla-core: DLA runs FP16 or INT8 only; use --precision fp16 or int8, or drop --dla-core")
        refusal = _dla_refusal(t, v) if v is not None else None
        if refusal:
            raise MescError(refusal)
    return warnings


def plan_build(target, precision: str, trt_version, dla_core: int | None = None,
               compute_capability: str | None = None, allow_slow: bool = False,
               workspace_mb: int | None = None, tf32: bool = True) -> BuildPlan:
    """Validate the request and decide how to build it (see the module docstring)."""
    t = target if isinstance(target, Target) else get_target(target)
    notes = check_build_request(t, precision, trt_version, dla_core, compute_capability, allow_slow)
    v = parse_version(trt_version)
    strongly = v >= (10,)
    on_dla = dla_core is not None
    if on_dla and (10,) <= v < (11,):
        # TensorRT 10.x DLA builds still take the FP16/INT8 flags; we keep them weakly typed there.
        strongly = False
    implicit = precision == "int8" and on_dla and v < (10,)
    if implicit:
        notes.append("TensorRT 8.x has no explicit Q/DQ on DLA: INT8 is calibrated implicitly on the FP32 graph")
        source = "fp32"
    else:
        source = "fp32" if precision == "fp32" else precision
    fp16_flag = int8_flag = False
    if not strongly:
        int8_flag = precision == "int8"
        # FP16 lets the layers that INT8 leaves (and DLA's non-INT8 layers) avoid FP32, where FP16 is fast.
        fp16_flag = precision == "fp16" or (precision == "int8" and t.fast_fp16)
    if on_dla:
        notes.append("layers DLA cannot run fall back to the GPU")
    return BuildPlan(
        target=t.name, precision=precision, trt_version=_fmt(v), strongly_typed=strongly, source=source,
        fp16_flag=fp16_flag, int8_flag=int8_flag, implicit_int8=implicit, dla_core=dla_core,
        gpu_fallback=on_dla, tf32=tf32 and precision == "fp32", workspace_mb=workspace_mb or t.workspace_mb,
        notes=tuple(notes),
    )


def check_onnx_ops(model, trt_version, where: str = "") -> None:
    """Refuse graphs the given TensorRT cannot parse (opset; Equal on bool tensors on 8.x, whose
    parser takes Cast to BOOL but Equal on FP32/FP16/INT32 only: onnx-tensorrt docs/operators.md
    on the 8.5-GA and 8.6-GA branches).

    ``model`` is an onnx ModelProto; only its opset and nodes are read.
    """
    v = parse_version(trt_version)
    pre = f"{where}: " if where else ""
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
    if v < (10,) and opset is not None and opset > 17:
        raise MescError(f"{pre}ONNX opset {opset} is newer than TensorRT {_fmt(v)} parses (17 at most); "
                        f"re-export with --opset 17")
    if v >= (10,):
        return
    bool_type = 9  # onnx.TensorProto.BOOL
    bool_tensors = {i.name for i in model.graph.input if i.type.tensor_type.elem_type == bool_type}
    for node in model.graph.node:
        to = next((a.i for a in node.attribute if a.name == "to"), None) if node.op_type == "Cast" else None
        if to == bool_type or node.op_type in ("Equal", "Less", "Greater", "Not", "And", "Or", "Xor"):
            bool_tensors.update(node.output)
    for node in model.graph.node:
        if node.op_type == "Equal" and any(i in bool_tensors for i in node.input):
            raise MescError(f"{pre}node '{node.name}' compares bool tensors (Equal on bool), which TensorRT "
                            f"{_fmt(v)} does not support")
