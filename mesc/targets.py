"""Deployment targets and version parsing: the facts the builder and the runtime both read.

A base module (layer 0, see docs/design.md "Layout"): the engine builder (``mesc.engines``),
the TensorRT compat and ONNX Runtime's TensorRT execution provider all ask it, and it imports
nothing of theirs. Pure logic (no TensorRT import), so every refusal is tested on CPU; the
build plan itself is :mod:`mesc.engines.targets`.

What a target supports, per TensorRT version:

* Pascal (sm_61) has no fast FP16; FP16 engines there are slower than FP32.
* DLA: TensorRT 10.7 was the last release with DLA before 11.4.1, which brings it back on
  Jetson AGX Orin only (JetPack 7.2.2; 11.4.0 has DLA on Windows on ARM only).
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


def format_version(v: tuple) -> str:
    """(8, 6, 1) -> '8.6.1'."""
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
    # the in-graph MESS policy's window formulation where it is exact (mesc.exporters.policy.pooling):
    # on a GPU each node is a kernel launch, so the 29-30 node "pool" form beats the 111-147 node "shift"
    policy_pooling: str = "pool"
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
    if target.policy_pooling not in ("shift", "pool"):
        raise MescError(f"target '{target.name}': policy_pooling must be 'shift' or 'pool', got {target.policy_pooling!r}")
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


def dla_refusal(t: Target, v: tuple) -> str | None:
    """Why TensorRT ``v`` cannot build DLA engines for ``t`` (None: it can)."""
    if _DLA_GAP[0] <= v < _DLA_GAP[1]:
        return (f"TensorRT {format_version(v)} has no DLA support on Jetson (10.7 was the last before 11.4.1); "
                f"use the JetPack's own TensorRT or drop --dla-core")
    if v >= _DLA_GAP[1] and _DLA_ON_TRT11 not in (t.compute_capabilities or ()):
        return (f"TensorRT {format_version(v)} has DLA on Jetson AGX Orin (sm_87, JetPack 7.2.2 or later) only, "
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
        raise MescError(f"target '{t.name}' needs TensorRT {t.trt_range()}, this machine has {format_version(v)} "
                        f"({t.notes})")
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
        refusal = dla_refusal(t, v) if v is not None else None
        if refusal:
            raise MescError(refusal)
    return warnings


