"""TensorRT runner: the package's plans for one target, chained on one CUDA stream.

Written against TensorRT's name-based I/O API (8.5 and later, through 10.x/11.x):
``set_input_shape`` / ``set_tensor_address`` / ``execute_async_v3``. Device memory and the
stream come from ``polygraphy.cuda`` (pure Python over libcudart), not torch. Each output is a
pooled device buffer handed to the next segment by address: nothing is copied between
segments, and buffers are reused across calls of the same shapes.

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
from pathlib import Path

import numpy as np

from mesc.lazy import require
from mesc.package import sha256_file
from mesc.runtime import devices
from mesc.runtime.errors import BackendError, DeviceError, EngineMismatchError
from mesc.runtime.runners.base import Runner

META_KEYS = ("trt_version", "device", "compute_capability", "precision")


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


# Device memory ---------------------------------------------------------------------------------

class _Pool:
    """Device buffers by size, reused across segments and calls (allocated once per shape)."""

    def __init__(self, cuda):
        self.cuda = cuda
        self.free: dict[int, list] = {}
        self.all: list = []

    def acquire(self, nbytes: int):
        blocks = self.free.get(nbytes)
        if blocks:
            return blocks.pop()
        block = self.cuda.DeviceArray.raw((max(nbytes, 1),))
        self.all.append(block)
        return block

    def release(self, nbytes: int, block) -> None:
        self.free.setdefault(nbytes, []).append(block)

    def close(self):
        for block in self.all:
            block.free()
        self.all, self.free = [], {}


class DeviceTensor:
    """A tensor in a pooled device buffer; the buffer returns to the pool when the handle
    goes. Reuse is safe without a sync: every kernel and copy is on the runner's one stream."""

    __slots__ = ("ptr", "shape", "dtype", "_pool", "_block", "_nbytes", "_keep")

    def __init__(self, pool, shape, dtype, keep=None):
        self.shape, self.dtype = tuple(int(d) for d in shape), np.dtype(dtype)
        self._nbytes = int(np.prod(self.shape, dtype=np.int64)) * self.dtype.itemsize
        self._pool, self._block, self._keep = pool, pool.acquire(self._nbytes), keep
        self.ptr = self._block.ptr

    @property
    def nbytes(self):
        return self._nbytes

    def __del__(self):
        if self._pool is not None and self._pool.all:
            self._pool.release(self._nbytes, self._block)
            self._pool = None


class TrtRunner(Runner):
    backend = "tensorrt"

    def __init__(self, pkg, device, target: str | None = None, precision: str | None = None,
                 verbose: bool = False):
        super().__init__(pkg, device)
        if not device.is_cuda:
            raise DeviceError(f"TensorRT runs on CUDA devices only, not {device}; use device='cuda:0' "
                              f"(or backend='onnxruntime' for the CPU)")
        self.trt = require("tensorrt", extra="trt", purpose="the TensorRT backend")
        self.cuda = require("polygraphy.cuda", extra="trt", purpose="device memory for the TensorRT backend")
        devices.check_cuda_device(device)
        self.compute_capability = devices.compute_capability(device.index)
        self.device_name = devices.device_name(device.index)
        self.target = choose_target(pkg.manifest, target, self.compute_capability)
        self.variant = choose_variant(pkg.manifest, self.target, precision)
        self.entries = engine_entries(pkg.manifest, self.target, self.variant)
        missing = [s["name"] for s in pkg.segments if s["name"] not in self.entries]
        if missing:
            raise BackendError(f"target '{self.target}' has no engine for segments {missing}; rebuild its engines")
        for name, meta in self.entries.items():
            for note in check_engine(name, meta, self.trt.__version__, self.compute_capability, self.device_name):
                warnings.warn(note, stacklevel=2)
        self.verbose = verbose

    def _activate(self):
        trt = self.trt
        devices.set_cuda_device(self.device.index)
        self._logger = trt.Logger(trt.Logger.VERBOSE if self.verbose else trt.Logger.WARNING)
        self._runtime = trt.Runtime(self._logger)
        self.engines, self.contexts, self.io = {}, {}, {}
        for seg in self.pkg.segments:
            name = seg["name"]
            engine = self._runtime.deserialize_cuda_engine(self._read_plan(name))
            if engine is None:
                raise EngineMismatchError(f"TensorRT could not deserialise the engine of segment '{name}' "
                                          f"(see the TensorRT log above); rebuild it on this machine")
            context = engine.create_execution_context()
            if context is None:
                raise BackendError(f"TensorRT could not create an execution context for segment '{name}' "
                                   f"(out of device memory?)")
            self.engines[name], self.contexts[name] = engine, context
            names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
            self.io[name] = {
                "inputs": [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT],
                "outputs": [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT],
                "dtype": {n: np.dtype(trt.nptype(engine.get_tensor_dtype(n))) for n in names},
            }
        self.stream = self.cuda.Stream()
        self.pool = _Pool(self.cuda)

    def _read_plan(self, name) -> bytes:
        meta = self.entries[name]
        rel = meta.get("file")
        if not rel:
            raise BackendError(f"target '{self.target}': segment '{name}' lists no plan file")
        path = Path(self.pkg.root) / rel
        if not path.is_file():
            raise BackendError(f"target '{self.target}': the plan {rel} of segment '{name}' is missing")
        digest = self.pkg.manifest["files"].get(rel) or meta.get("sha256")
        if digest and sha256_file(path) != digest:
            raise BackendError(f"target '{self.target}': the plan {rel} was altered (checksum differs)")
        return path.read_bytes()

    def _deactivate(self):
        self.stream.synchronize()
        self.pool.close()
        self.stream.free()
        # contexts before engines before the runtime: TensorRT's destruction order
        self.contexts.clear()
        self.engines.clear()
        del self._runtime

    # tensors ---------------------------------------------------------------------------------
    def upload(self, array):
        host = np.ascontiguousarray(array)
        t = DeviceTensor(self.pool, host.shape, host.dtype, keep=host)
        self._copy(t.ptr, host.ctypes.data, t.nbytes, self.cuda.MemcpyKind.HostToDevice)
        return t

    def download(self, handle):
        host = np.empty(handle.shape, handle.dtype)
        self._copy(host.ctypes.data, handle.ptr, handle.nbytes, self.cuda.MemcpyKind.DeviceToHost)
        self.stream.synchronize()
        return host

    def shape(self, handle):
        return handle.shape

    def take(self, handle, rows):
        rows = np.asarray(rows, np.int64)
        row = handle.nbytes // max(handle.shape[0], 1)
        out = DeviceTensor(self.pool, (len(rows), *handle.shape[1:]), handle.dtype)
        # one device-to-device copy per run of consecutive rows (NCHW rows are contiguous)
        start = 0
        for end in range(1, len(rows) + 1):
            if end == len(rows) or rows[end] != rows[end - 1] + 1:
                self._copy(out.ptr + start * row, handle.ptr + int(rows[start]) * row, (end - start) * row,
                           self.cuda.MemcpyKind.DeviceToDevice)
                start = end
        return out

    def _copy(self, dst, src, nbytes, kind):
        if nbytes:
            self.cuda.wrapper().memcpy(dst=dst, src=src, nbytes=nbytes, kind=kind, stream_ptr=self.stream.ptr)

    def run(self, segment, feeds, outputs):
        name = segment["name"]
        ctx, io = self.contexts[name], self.io[name]
        for tname in io["inputs"]:
            h = feeds.get(tname)
            if h is None:
                raise BackendError(f"segment '{name}': no value for engine input '{tname}'")
            if h.dtype != io["dtype"][tname]:
                raise BackendError(f"segment '{name}': engine input '{tname}' is {io['dtype'][tname]}, got {h.dtype}")
            if tuple(ctx.get_tensor_shape(tname)) != h.shape and not ctx.set_input_shape(tname, h.shape):
                raise BackendError(f"segment '{name}': the engine does not accept shape {h.shape} for '{tname}' "
                                   f"(outside its optimisation profile?)")
            ctx.set_tensor_address(tname, h.ptr)
        produced = {}
        for tname in io["outputs"]:
            # every output needs an address; the unfetched ones go back to the pool right after
            t = DeviceTensor(self.pool, tuple(ctx.get_tensor_shape(tname)), io["dtype"][tname])
            ctx.set_tensor_address(tname, t.ptr)
            produced[tname] = t
        if not ctx.execute_async_v3(self.stream.ptr):
            raise BackendError(f"segment '{name}': TensorRT execution failed (see the TensorRT log)")
        return {n: produced[n] for n in outputs}
