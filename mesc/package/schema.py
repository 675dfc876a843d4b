"""The typed, read-only view of a package manifest (``mesc.json``; layout in :mod:`mesc.package.package`).

:class:`Manifest` is built once from a manifest that :func:`mesc.package.manifest.validate_manifest`
accepted, and every stage that runs a package (runtime, calibrate, bench, prepare, build,
selftest) reads the manifest through it instead of indexing the JSON: a misspelt field is an
``AttributeError`` at the line that reads it, not a ``KeyError`` deep inside a run, and the
defaults that older packages rely on (an exit without ``point`` is its own point, without
``enabled`` is enabled) are applied here, once. The JSON on disk is unchanged; what writes it
(export, calibrate, bench, build) still edits :attr:`Package.manifest`, and the package rebuilds
this view after each write.

Adding a manifest field: a field on the record here, read in its ``from_dict``, and its check
in :mod:`mesc.package.manifest`.

Plain frozen dataclasses that Python 3.8 has; nested JSON objects that are not (yet) typed
(an exit's policy, an engine build's per-segment entries) are read-only mappings of a copy.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Dict, Mapping, Optional, Tuple, Union

from mesc.package.manifest import exit_points
from mesc.policy import pooling_of

Dim = Union[int, str]  # a size, or a name for a dynamic dimension ("batch")


def _frozen(obj) -> Optional[Mapping]:
    """A read-only mapping over a private copy of a JSON object (None stays None)."""
    return None if obj is None else MappingProxyType(copy.deepcopy(dict(obj)))


def _map(items) -> Mapping:
    return MappingProxyType(dict(items))


@dataclass(frozen=True)
class Tensor:
    """A tensor a segment reads or writes."""

    name: str
    shape: Tuple[Dim, ...]
    dtype: str

    @classmethod
    def from_dict(cls, d: dict) -> "Tensor":
        return cls(name=d["name"], shape=tuple(d["shape"]), dtype=d["dtype"])

    def as_dict(self) -> dict:
        """The manifest's form, ``{"name", "shape", "dtype"}`` (shape a list)."""
        return {"name": self.name, "shape": list(self.shape), "dtype": self.dtype}


@dataclass(frozen=True)
class Entry:
    """Where uint8 images are normalised on the device: the entry segment, which reads them as
    ``input`` (uint8, ``layout`` N x H x W x C) and gives the package's float input."""

    segment: str
    input: str
    layout: str = "NHWC"

    @classmethod
    def from_dict(cls, d: dict) -> "Entry":
        return cls(segment=d["segment"], input=d["input"], layout=d.get("layout", "NHWC"))


@dataclass(frozen=True)
class Input(Tensor):
    """The package's float image input (NxCxHxW, what the first chunk reads) and how an image is
    scaled into it: by the entry segment where there is one, else on the host."""

    dynamic_batch: bool = False
    # {"scale", "mean", "std"}, any of them absent; None: none recorded (scale 255, mean 0, std 1)
    normalization: Optional[Mapping[str, Any]] = None
    # None: uint8 images are normalised on the host (every package written before entries existed)
    entry: Optional[Entry] = None

    @classmethod
    def from_dict(cls, d: dict) -> "Input":
        return cls(name=d["name"], shape=tuple(d["shape"]), dtype=d["dtype"],
                   dynamic_batch=bool(d.get("dynamic_batch", False)), normalization=_frozen(d.get("normalization")),
                   entry=Entry.from_dict(d["entry"]) if d.get("entry") else None)

    @property
    def normalized_on(self) -> str:
        """Where uint8 images are normalised: ``"device"`` (the entry segment) or ``"host"``."""
        return "device" if self.entry is not None else "host"

    @property
    def batch(self) -> Dim:
        return self.shape[0]

    @property
    def static_batch(self) -> Optional[int]:
        """The batch every graph takes, or None where it is dynamic."""
        n = self.shape[0]
        return n if isinstance(n, int) and not self.dynamic_batch else None


@dataclass(frozen=True)
class Segment:
    """One per-segment graph: the uint8 ``entry``, a backbone ``chunk``, an exit's ``head`` or an
    exit's ``tail``."""

    name: str
    kind: str
    file: str
    inputs: Tuple[Tensor, ...]
    outputs: Tuple[Tensor, ...]
    exit: Optional[str] = None  # the exit whose head or tail this is
    flops: Optional[float] = None

    @classmethod
    def from_dict(cls, d: dict) -> "Segment":
        return cls(name=d["name"], kind=d["kind"], file=d["file"],
                   inputs=tuple(Tensor.from_dict(t) for t in d["inputs"]),
                   outputs=tuple(Tensor.from_dict(t) for t in d["outputs"]),
                   exit=d.get("exit"), flops=d.get("flops"))

    @property
    def input_names(self) -> Tuple[str, ...]:
        return tuple(t.name for t in self.inputs)

    @property
    def output_names(self) -> Tuple[str, ...]:
        return tuple(t.name for t in self.outputs)

    def output(self, name: str) -> Tensor:
        for t in self.outputs:
            if t.name == name:
                return t
        raise KeyError(f"segment '{self.name}' has no output '{name}'")


@dataclass(frozen=True)
class Exit:
    """One exit: the head segment that computes it, its optional tail, the tensors the runtime
    fetches, and its policy settings."""

    name: str
    position: int  # among the package's exits, 0-based
    segment: str  # the head
    logits: str
    num_classes: int
    output_stride: int
    # the exit policy's settings as written ({"kind", "th_pix", "th_img", ...}); typed by mesc.policy
    policy: Mapping[str, Any]
    point: int  # the exit point (manifest.exit_points); candidate heads at one point share it
    index: Optional[int] = None  # the exit's position among the model's exits (packages may keep a subset)
    tail: Optional[str] = None
    labels: Optional[str] = None  # set where the policy runs in the exit's graph
    confidence: Optional[str] = None
    th_pix_input: Optional[str] = None
    policy_logits: Optional[str] = None
    candidate: int = 0
    enabled: bool = True  # calibrate disables the exits it drops; the final exit is always enabled
    config: Optional[Mapping[str, Any]] = None  # the head's ExitConfig, for re-export

    @classmethod
    def from_dict(cls, d: dict, position: int, point: int) -> "Exit":
        return cls(name=d["name"], position=position, segment=d["segment"], logits=d["logits"],
                   num_classes=d["num_classes"], output_stride=d["output_stride"],
                   policy=_frozen(d.get("policy") or {}), point=point, index=d.get("index"),
                   tail=d.get("tail"), labels=d.get("labels"), confidence=d.get("confidence"),
                   th_pix_input=d.get("th_pix_input"), policy_logits=d.get("policy_logits"),
                   candidate=d.get("candidate", 0), enabled=d.get("enabled", True), config=_frozen(d.get("config")))

    @property
    def in_graph(self) -> bool:
        """Whether the exit's graph computes its policy (labels and confidence are outputs)."""
        return bool(self.labels and self.confidence)

    @property
    def pooling(self) -> str:
        """How the exit's MESS head computes its windows ("shift" where the manifest says nothing)."""
        return pooling_of(self.policy)

    @property
    def model_index(self) -> int:
        """The exit's index among the model's exits; packages without one count positions."""
        return self.position if self.index is None else self.index


@dataclass(frozen=True)
class ClassInfo:
    """A class's display name and its fixed RGB colour (``mesc export --class-names``): what
    overlays and label PNGs show, the same in every tool."""

    name: str
    color: Tuple[int, int, int]

    @classmethod
    def from_dict(cls, d: dict) -> "ClassInfo":
        return cls(name=d["name"], color=tuple(d["color"]))


@dataclass(frozen=True)
class LatencyRecord:
    """Measured per-segment latencies under one key (``backend/device[/...]``, what ``mesc bench
    --record`` writes and ``mesc calibrate --latency-key`` reads), in ms."""

    key: str
    ms: Mapping[str, float]  # segment name -> ms

    @classmethod
    def from_dict(cls, key: str, d: dict) -> "LatencyRecord":
        return cls(key=key, ms=_map(d))

    def covers(self, segments) -> bool:
        """Whether every one of ``segments`` (names or :class:`Segment`) has a numeric entry."""
        return all(isinstance(self.ms.get(getattr(s, "name", s)), (int, float)) for s in segments)

    def missing(self, segments) -> list:
        return [n for n in (getattr(s, "name", s) for s in segments) if not isinstance(self.ms.get(n), (int, float))]


@dataclass(frozen=True)
class Precision:
    """A prepared precision (``mesc prepare``): the graph file of each segment and the measured
    agreement with FP32."""

    name: str  # "fp16", "int8"
    segments: Mapping[str, str]  # segment name -> package path of its graph
    accuracy: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    # exit name -> the MESS windows ("shift"/"pool") its prepared head computes; an exit not
    # named (every exit of a package prepared before the key) computes the package's own
    policy_pooling: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))

    @classmethod
    def from_dict(cls, name: str, d: dict) -> "Precision":
        return cls(name=name, segments=_map(d.get("segments") or {}), accuracy=_frozen(d.get("accuracy") or {}),
                   policy_pooling=_map(d.get("policy_pooling") or {}))


@dataclass(frozen=True)
class EngineBuild:
    """One engine build (``mesc build``) for a target: the entry as written (``dir``, ``plan``,
    ``trt_version``, ``device``, ``segments``, ...), read-only."""

    target: str
    variant: str  # "<precision>[-dla<N>]"; "" for a build written directly under the target
    entry: Mapping[str, Any]

    @property
    def segments(self) -> Mapping[str, Any]:
        return self.entry.get("segments") or MappingProxyType({})

    @property
    def policy_fp32_layers(self) -> Dict[str, int]:
        """segment -> how many of its exit policy's layers the builder pinned to FP32 (weakly
        typed FP16/INT8 builds record it; FP32, strongly typed and older builds do not)."""
        return {name: seg["policy_fp32_layers"] for name, seg in self.segments.items()
                if "policy_fp32_layers" in seg}


@dataclass(frozen=True)
class Manifest:
    """The whole manifest, typed where the stages read it."""

    schema_version: int
    input: Input
    segments: Tuple[Segment, ...]
    exits: Tuple[Exit, ...]
    files: Mapping[str, str]  # package path -> sha256
    source: Mapping[str, Any]
    latency: Mapping[str, LatencyRecord]
    precisions: Mapping[str, Precision]
    # target -> variant -> build ("" for a build written directly under its target)
    engines: Mapping[str, Mapping[str, EngineBuild]]
    mesc_version: Optional[str] = None
    created: Optional[str] = None
    # exported with candidate heads: the exits name their exit points (packages without have none)
    has_points: bool = False
    # class names and colours by class id; None for packages exported without --class-names
    classes: Optional[Tuple[ClassInfo, ...]] = None

    @classmethod
    def from_dict(cls, m: dict) -> "Manifest":
        engines: Dict[str, Mapping[str, EngineBuild]] = {}
        for target, entry in (m.get("engines") or {}).items():
            builds = {"": entry} if "segments" in entry else entry
            engines[target] = _map((v, EngineBuild(target, v, _frozen(b))) for v, b in builds.items())
        return cls(
            schema_version=m["schema_version"], input=Input.from_dict(m["input"]),
            segments=tuple(Segment.from_dict(s) for s in m["segments"]),
            exits=tuple(Exit.from_dict(e, k, p) for k, (e, p) in enumerate(zip(m["exits"], exit_points(m["exits"])))),
            files=_map(m.get("files") or {}), source=_frozen(m.get("source") or {}),
            latency=_map((k, LatencyRecord.from_dict(k, v)) for k, v in (m.get("latency") or {}).items()),
            precisions=_map((k, Precision.from_dict(k, v)) for k, v in (m.get("precisions") or {}).items()),
            engines=_map(engines), mesc_version=m.get("mesc_version"), created=m.get("created"),
            has_points=any("point" in e for e in m["exits"]),
            classes=tuple(ClassInfo.from_dict(c) for c in m["classes"]) if m.get("classes") else None)
