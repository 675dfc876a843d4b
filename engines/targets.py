"""The build plan: which TensorRT mode builds which precision where, for a target of
:mod:`mesc.targets`.

Pure logic (no TensorRT import), so every plan is tested on CPU. The engine builder asks
:func:`plan_build` what to do and only then touches TensorRT. The decisions, per TensorRT version:

* TensorRT >= 10 builds strongly typed: precision comes from the ONNX graph (FP16 casts, Q/DQ),
  never from builder flags (deprecated in 10.12, removed in 11 together with the calibrators).
* TensorRT 8.x builds weakly typed: the FP16/INT8 builder flags enable the lower precisions;
  an INT8 graph still carries explicit Q/DQ, except on DLA where 8.x has no explicit
  quantization: there the FP32 graph is calibrated implicitly (a calibrator and its cache).
  The flags would let TensorRT lower the exit policy too, so its layers are pinned to FP32
  (:attr:`BuildPlan.pins_policy_fp32`).
* FP32 engines use TF32 (polygraphy clears it unless asked), unless the user opts out.
"""

from __future__ import annotations

import dataclasses

from mesc.errors import MescError
from mesc.targets import Target, check_build_request, format_version, get_target, parse_version


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

    @property
    def pins_policy_fp32(self) -> bool:
        """Does the builder pin the exit policy's layers to FP32? Only a weakly typed build with
        the FP16 or INT8 flag can lower them (:mod:`mesc.runtime.backends.trt.policy_precision`);
        a strongly typed one takes their FP32 from the prepared graph."""
        return not self.strongly_typed and (self.fp16_flag or self.int8_flag)

    def as_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["notes"] = list(self.notes)
        return d


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
        target=t.name, precision=precision, trt_version=format_version(v), strongly_typed=strongly, source=source,
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
        raise MescError(f"{pre}ONNX opset {opset} is newer than TensorRT {format_version(v)} parses (17 at most); "
                        f"re-export with --opset 17")
    uint8_type = 2  # onnx.TensorProto.UINT8: the entry segment's input (uint8 images)
    if v < (8, 5) and any(i.type.tensor_type.elem_type == uint8_type for i in model.graph.input):
        # onnx-tensorrt docs/Changelog.md, 8.5 GA: "Added support for importing ONNX networks with
        # UINT8 I/O types" (a Cast from uint8 to float is its one use inside the network)
        raise MescError(f"{pre}a uint8 graph input (the entry segment's images) needs TensorRT 8.5 or later, not "
                        f"{format_version(v)}; re-export with --host-normalize to normalise on the host")
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
                            f"{format_version(v)} does not support")
