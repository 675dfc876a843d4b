"""TensorRT loader: a package's plans for one target and precision, checked and deserialised.

It picks the build (the target asked for or the one for this GPU, the precision asked for or
the only one), refuses plans this machine cannot run (TensorRT version, compute capability),
reads the plan files against their checksums and deserialises them; the runner only runs the
engines it is handed. Chain: ``EnginesFromPlans(PlansFromPackage(pkg, device, target, precision))``.

Engines are listed in the manifest per target; either form is read::

    "engines": {"<target>": {"<precision>[-dla<N>]": {
        "dir": "engines/<target>/<precision>", "trt_version": "8.6.1", "device": "...",
        "compute_capability": "6.1", "precision": "int8",
        "segments": {"chunk0": {"plan": "chunk0.plan", ...}, ...}}}}

(a target holding ``segments`` directly is one unnamed build). Metadata keys may also sit on
each segment (a segment's own value wins); plan paths are relative to ``dir``.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mesc.package import sha256_file
from mesc.package.schema import Segment
from mesc.runtime import devices
from mesc.runtime.backends.base import Loader, invoke_if_callable
from mesc.runtime.backends.io_check import io_mismatch
from mesc.runtime.backends.trt import compat
from mesc.runtime.errors import BackendError, DeviceError, EngineMismatchError

PURPOSE = "the TensorRT backend"


# Engine selection and checks: pure functions over the manifest, tested without TensorRT. -------

def _variants(manifest: dict, target: str) -> dict[str, dict]:
    entry = (manifest.get("engines") or {}).get(target)
    if not isinstance(entry, dict):
        raise BackendError(f"the package has no TensorRT engines for target '{target}'")
    if "segments" in entry:  # a target with a single, unnamed build
        return {"": entry}
    return {k: v for k, v in entry.items() if isinstance(v, dict) and "segments" in v}


def choose_variant(manifest: dict, target: str, precision: str | None) -> str:
    """The build of ``target`` to run ("<precision>[-dla<N>]"): the one asked for, or the only one."""
    variants = _variants(manifest, target)
    if precision is not None:
        if precision not in variants:
            raise BackendError(f"target '{target}' has no '{precision}' engines; it has {sorted(variants)}")
        return precision
    if len(variants) == 1:
        return next(iter(variants))
    if not variants:
        raise BackendError(f"target '{target}' lists no engines")
    raise BackendError(f"target '{target}' has engines in several precisions {sorted(variants)}; "
                       f"choose one with precision=... (--precision)")


def engine_entries(manifest: dict, target: str, variant: str = "") -> dict[str, dict]:
    """segment name -> {"file": <path in the package>, metadata...} for one build; the build's
    own keys (trt_version, device, ...) apply to every segment unless a segment overrides them."""
    build = _variants(manifest, target).get(variant)
    if build is None:
        raise BackendError(f"target '{target}' has no '{variant}' engines")
    common = {k: v for k, v in build.items() if not isinstance(v, dict)}
    out = {}
    for name, seg in build["segments"].items():
        meta = dict(common, **(seg if isinstance(seg, dict) else {"plan": seg}))
        rel = meta.get("file") or meta.get("plan")
        if rel and build.get("dir") and not str(rel).startswith(str(build["dir"]).rstrip("/") + "/"):
            rel = f"{str(build['dir']).rstrip('/')}/{rel}"
        meta["file"] = rel
        out[name] = meta
    return out


def choose_target(manifest: dict, target: str | None, compute_capability: str | None) -> str:
    """The target asked for, or the only one, or the only one built for this GPU's compute
    capability; anything else is ambiguous and named."""
    engines = manifest.get("engines") or {}
    if not engines:
        raise BackendError("the package has no TensorRT engines; build them on the target device first "
                           "(or run the ONNX segments with --backend onnxruntime)")
    if target is not None:
        if target not in engines:
            raise BackendError(f"no engines for target '{target}'; the package has {sorted(engines)}")
        return target
    if len(engines) == 1:
        return next(iter(engines))
    fits = [t for t in engines if compute_capability and compute_capability in _ccs_of(manifest, t)]
    if len(fits) == 1:
        return fits[0]
    raise BackendError(f"the package has engines for several targets {sorted(engines)}; choose one with target=... "
                       f"(--target)" + (f"; this GPU is sm_{compute_capability.replace('.', '')}"
                                         if compute_capability else ""))


def _ccs_of(manifest, target) -> set:
    ccs = set()
    for variant in _variants(manifest, target):
        ccs |= {str(m.get("compute_capability")) for m in engine_entries(manifest, target, variant).values()}
    return ccs


def _version3(v) -> tuple:
    parts = []
    for p in str(v).split(".")[:3]:
        digits = "".join(ch for ch in p if ch.isdigit())
        parts.append(int(digits) if digits else 0)
    return tuple(parts)


def check_engine(segment: str, meta: dict, trt_version: str, compute_capability: str | None,
                 device_name: str | None) -> list[str]:
    """Raise :class:`EngineMismatchError` for a plan this machine cannot run; return warnings
    for differences that only cost speed (another GPU model of the same compute capability)."""
    where = f"engine for segment '{segment}' ({meta.get('file', '?')})"
    built = meta.get("trt_version")
    if built is None:
        raise EngineMismatchError(f"{where}: no trt_version in its metadata; rebuild the engines")
    if _version3(built) != _version3(trt_version):
        raise EngineMismatchError(f"{where} was built with TensorRT {built}, this machine has {trt_version}; "
                                  f"plans only load in the TensorRT version that built them: rebuild on this machine")
    cc = meta.get("compute_capability")
    if cc is not None and compute_capability is not None and str(cc) != str(compute_capability):
        raise EngineMismatchError(f"{where} was built for compute capability {cc} ({meta.get('device', '?')}), "
                                  f"this GPU ({device_name or '?'}) is {compute_capability}: rebuild on this device")
    notes = []
    if meta.get("device") and device_name and meta["device"] != device_name:
        notes.append(f"{where} was built on {meta['device']}, running on {device_name} (same compute "
                     f"capability {cc}): it runs, but its tactics were tuned for the other GPU")
    return notes


def select_engines(pkg, target: str | None, precision: str | None, facts: dict) -> tuple[str, str, dict, list]:
    """(target, variant, {segment: metadata}, warnings) of the build to run on a machine with
    ``facts`` (:func:`compat.engine_facts`); raises where no build fits or a plan cannot run."""
    target = choose_target(pkg.manifest, target, facts["compute_capability"])
    variant = choose_variant(pkg.manifest, target, precision)
    entries = engine_entries(pkg.manifest, target, variant)
    missing = [s.name for s in pkg.segments if s.name not in entries]
    if missing:
        raise BackendError(f"target '{target}' has no engine for segments {missing}; rebuild its engines")
    notes = [note for name, meta in entries.items()
             for note in check_engine(name, meta, facts["trt_version"], facts["compute_capability"], facts["device"])]
    return target, variant, entries, notes


def dla_core_of(variant: str, entries: dict) -> int | None:
    """The DLA core a build runs on: recorded by the builder, or read from its variant name
    ('int8-dla1'); None for GPU builds."""
    cores = {m.get("dla_core") for m in entries.values()} - {None}
    if len(cores) > 1:
        raise BackendError(f"build '{variant}' lists several DLA cores {sorted(cores)}; rebuild its engines")
    if cores:
        return int(cores.pop())
    _, _, core = variant.rpartition("-dla")
    return int(core) if variant and core.isdigit() else None


def read_plan(pkg, target: str, name: str, meta: dict) -> bytes:
    """The plan file of segment ``name``, refused when missing or altered since the manifest."""
    rel = meta.get("file")
    if not rel:
        raise BackendError(f"target '{target}': segment '{name}' lists no plan file")
    path = Path(pkg.root) / rel
    if not path.is_file():
        raise BackendError(f"target '{target}': the plan {rel} of segment '{name}' is missing")
    digest = pkg.manifest["files"].get(rel) or meta.get("sha256")
    if digest and sha256_file(path) != digest:
        raise BackendError(f"target '{target}': the plan {rel} was altered (checksum differs)")
    return path.read_bytes()


# TensorRT's DataType names (as compat.engine_io spells them), as numpy names them
_TRT_DTYPES = {"float": "float32", "half": "float16", "bf16": "bfloat16", "int8": "int8", "uint8": "uint8",
               "int32": "int32", "int64": "int64", "bool": "bool"}


def numpy_dtype(trt_dtype) -> np.dtype:
    """numpy's dtype for a TensorRT ``DataType``. mesc maps them itself: TensorRT 8.5's
    ``trt.nptype`` names ``np.bool``, which numpy 1.24 removed, so it fails on every engine
    with a bool tensor there."""
    name = _TRT_DTYPES.get(compat.dtype_name(trt_dtype))
    if name is None or name == "bfloat16":  # numpy has no bfloat16
        raise BackendError(f"the engine has a {compat.dtype_name(trt_dtype)} tensor, which numpy cannot hold; "
                           f"export the segment with float32, float16 or integer I/O")
    return np.dtype(name)


def check_engine_io(segment: Segment, io: list[dict]) -> None:
    """Refuse an engine whose I/O is not the segment's in the manifest. ``io`` is what
    :func:`compat.engine_io` reads from the engine: name, mode ("input"/"output"), dtype
    (TensorRT's name) and shape (-1 for a dimension its optimisation profile leaves open)."""
    def rows(mode):
        return [(t["name"], _TRT_DTYPES.get(t["dtype"], t["dtype"]), [None if d < 0 else d for d in t["shape"]])
                for t in io if t["mode"] == mode]

    problem = io_mismatch(segment, rows("input"), rows("output"), what="the engine")
    if problem:
        raise EngineMismatchError(f"segment '{segment.name}' {problem}; the engine was not built from this "
                                  f"package's graph: rebuild the engines (mesc build)")


# Loaders -----------------------------------------------------------------------------------------

class PlansFromPackage(Loader):
    """``PlansFromPackage(pkg, device, target, precision)()`` -> {segment: plan bytes}.

    The choice of build and the metadata checks happen on construction, so a wrong request or
    a plan for another machine fails at ``mesc.load``; the files are read on the call.
    """

    def __init__(self, pkg, device, target: str | None = None, precision: str | None = None):
        if not device.is_cuda:
            raise DeviceError(f"TensorRT runs on CUDA devices only, not {device}; use device='cuda:0' "
                              f"(or backend='onnxruntime' for the CPU)")
        compat.tensorrt(PURPOSE)
        devices.check_cuda_device(device)
        self.pkg = pkg
        self.target, self.variant, self.entries, notes = select_engines(
            pkg, target, precision, compat.engine_facts(device.index))
        self.dla_core = dla_core_of(self.variant, self.entries)
        for note in notes:
            warnings.warn(note, stacklevel=2)

    def call_impl(self) -> dict[str, bytes]:
        return {seg.name: read_plan(self.pkg, self.target, seg.name, self.entries[seg.name])
                for seg in self.pkg.segments}


@dataclass
class Engines:
    """What :class:`EnginesFromPlans` makes: the engines by segment, and the runtime that
    deserialised them (TensorRT wants it to outlive them)."""

    runtime: object
    by_segment: dict


class EnginesFromPlans(Loader):
    """``EnginesFromPlans(plans)()`` -> :class:`Engines`; ``plans`` is {segment: bytes} or a
    loader making it. Deserialises on the current CUDA device (the runner selects it first),
    DLA plans on their DLA core (``dla_core``, default the one :class:`PlansFromPackage` chose).
    ``segments`` (the manifest's entries) checks each engine's I/O against its segment's."""

    def __init__(self, plans, verbose: bool = False, dla_core: int | None = None, segments: list[dict] | None = None):
        self.plans, self.verbose = plans, verbose
        self.dla_core = dla_core if dla_core is not None else getattr(plans, "dla_core", None)
        self.entries = {seg.name: seg for seg in segments or []}

    def call_impl(self) -> Engines:
        trt = compat.tensorrt(PURPOSE)
        logger = trt.Logger(trt.Logger.VERBOSE if self.verbose else trt.Logger.WARNING)
        runtime = trt.Runtime(logger)
        if self.dla_core is not None:
            # A DLA plan deserialises onto the runtime's DLA core (trtexec sets it first too);
            # left unset, a plan built for core 1 runs on core 0.
            runtime.DLA_core = self.dla_core
        engines = {}
        for name, plan in invoke_if_callable(self.plans).items():
            engine = runtime.deserialize_cuda_engine(plan)
            if engine is None:
                raise EngineMismatchError(f"TensorRT could not deserialise the engine of segment '{name}' "
                                          f"(see the TensorRT log above); rebuild it on this machine")
            if name in self.entries:
                check_engine_io(self.entries[name], compat.engine_io(engine))
            engines[name] = engine
        return Engines(runtime, engines)
