"""The early-exit pipeline: chains a package's segments on a runner under the exit policy.

This module decides, for every backend and device alike, what runs and what crosses to the
host: per exit only the image confidences (4 bytes an image; the logits where the package
has no in-graph policy), then the labels of the images that leave. Images that exit leave the
batch; the live tensors of the others are gathered on the device into a smaller batch.
"""

from __future__ import annotations

import contextlib
import dataclasses
import numbers
import threading
import warnings
from typing import Iterator

import numpy as np

from mesc.errors import MescError
from mesc.package.schema import Exit, Segment
from mesc.policy import KIND_THRESHOLDS, exit_decision, policy_kind
from mesc.runtime import host_policy
from mesc.runtime.clock import HostClock, ms_since, now
from mesc.runtime.device_input import DeviceArray, is_external, take_external
from mesc.runtime.errors import InputError
from mesc.runtime.images import normalize


@dataclasses.dataclass
class Result:
    """One image's prediction.

    ``timings["segments"]`` holds the wall-clock milliseconds of each segment the image took
    part in (in a batch, the whole batch's time for that segment); ``timings["total_ms"]`` is
    the time from the call until this image's labels were on the host. On TensorRT a segment's
    wall-clock time is its enqueue (the GPU runs it later); its device time is in
    ``Runner.segment_times`` (CUDA events), which ``time_segments`` and ``mesc bench`` report.
    """

    labels: np.ndarray  # H x W int32
    exit: str
    exit_index: int  # position among the package's exits
    confidences: dict  # exit name -> c_img at each exit visited (None where not computed)
    timings: dict
    final: bool = True  # anytime mode: False while later exits may still refine it
    logits: np.ndarray | None = None  # M x H x W, only when asked for
    # the logits the exit policy read, where they differ from ``logits`` (policy_at="native")
    policy_logits: np.ndarray | None = None

    def as_row(self) -> dict:
        return {"exit": self.exit, "exit_index": self.exit_index, "confidences": dict(self.confidences),
                "latency_ms": self.timings["total_ms"], "segments_ms": dict(self.timings["segments"])}


@dataclasses.dataclass
class Step:
    """One segment of a plan: what it reads, what it must output, what dies after it."""

    segment: Segment
    exit: Exit | None
    feeds: list
    th_input: str | None
    fetch: list
    release: list
    # the exit's tail (final upsampling, labels): run after the decision, for leaving images only
    tail: Segment | None = None
    tail_feeds: list = dataclasses.field(default_factory=list)
    tail_fetch: list = dataclasses.field(default_factory=list)


def build_plan(pkg, segments: list[Segment], in_graph: bool, logits: bool) -> list[Step]:
    """Steps for ``segments`` (execution order), fetching only the outputs that a later step
    reads or that the exit decision needs; logits stay unfetched unless asked for. A tail
    segment rides on its exit's head step."""
    exits = {ex.segment: ex for ex in pkg.exits}
    names = {s.name for s in segments}
    tails = {ex.segment: pkg.segment(ex.tail) for ex in pkg.exits if ex.tail in names}
    main = [s for s in segments if s.kind != "tail"]
    th_names = {ex.th_pix_input for ex in pkg.exits} - {None}

    def inputs(seg):
        return {t.name for t in seg.inputs if t.name not in th_names} if seg else set()

    reads = [inputs(seg) | inputs(tails.get(seg.name)) for seg in main]
    steps = []
    for i, seg in enumerate(main):
        later = set().union(*reads[i + 1:]) if i + 1 < len(main) else set()
        ex = exits.get(seg.name) if seg.kind == "head" else None
        tail = tails.get(seg.name)
        tail_in = inputs(tail)
        fetch = [o.name for o in seg.outputs if o.name in later or o.name in tail_in]
        tail_fetch = []
        if ex is not None:
            if tail is not None:
                wanted = [ex.confidence] + ([ex.policy_logits] if logits else [])
                tail_fetch = [ex.labels] + ([ex.logits] if logits else [])
            else:
                wanted = [ex.labels, ex.confidence] if in_graph else [ex.logits]
                if logits:
                    wanted += [ex.logits, ex.policy_logits or ex.logits]
            fetch += [n for n in dict.fromkeys(wanted) if n not in fetch]
        th = ex.th_pix_input if ex is not None and in_graph else None
        available = set().union(*reads[: i + 1]) | {o for s in steps for o in s.fetch} | set(fetch)
        release = sorted(n for n in available if n not in later)
        steps.append(Step(seg, ex, sorted(inputs(seg)), th, fetch, release, tail, sorted(tail_in), tail_fetch))
    return steps


@dataclasses.dataclass
class _ExitEvent:
    exit: Exit
    rows: np.ndarray  # batch positions (of the walk's input) that report at this exit
    labels: np.ndarray  # len(rows) x H x W
    logits: np.ndarray | None
    policy_logits: np.ndarray | None
    confidences: dict  # batch position -> c_img, for every image still undecided here
    segments_ms: dict
    elapsed_ms: float


class _Parts:
    """Milliseconds of the parts of one walk, by name: segment runs on ``clock`` (``start()`` ->
    token, ``stop(token)`` -> ms: e.g. CUDA events on the runner's stream), exit decisions on
    the host, where they happen whatever the device."""

    def __init__(self, clock=None):
        self.clock = clock or HostClock()
        self.ms: dict = {}

    @contextlib.contextmanager
    def device(self, name: str):
        t = self.clock.start()
        yield
        self.ms[name] = self.clock.stop(t)

    @contextlib.contextmanager
    def host(self, name: str):
        t = now()
        yield
        self.ms[name] = ms_since(t)


class _Untimed(_Parts):
    def device(self, name: str):
        return contextlib.nullcontext()

    host = device


_UNTIMED = _Untimed()


class Pipeline:
    """A package loaded on a runner. Call it on images; see :func:`mesc.runtime.load`."""

    def __init__(self, pkg, runner):
        self.pkg = pkg
        self.runner = runner.activate()
        # th_pix_input only where the exit runs MESS: the other kinds read no pixel threshold
        self.in_graph = all(ex.in_graph for ex in pkg.exits)
        inp = pkg.input
        self.input_name = inp.name
        # uint8 images run it (normalised on the device); float input starts at the first chunk
        self.entry = pkg.entry
        self.chw = tuple(inp.shape[1:])
        self.dynamic_batch = bool(inp.dynamic_batch) or not isinstance(inp.shape[0], int)
        self.static_batch = None if self.dynamic_batch else int(inp.shape[0])
        self._plans: dict = {}
        self._th_handles: dict = {}
        self._warned_static = False
        self._closed = False
        # calls using the runner now (close() waits for them), guarded by one condition
        self._busy = 0
        self._state = threading.Condition()
        # One call at a time: the runner's device buffers are fixed per segment and batch size
        # (and CUDA graphs replay them), so a second thread's call waits for the first to end.
        # ``mesc serve --instances`` runs one pipeline per instance; an anytime() generator holds
        # the pipeline from its first to its last exit (or until it is closed).
        self._lock = threading.Lock()
        self._owner = None
        self._device_out = False  # this call's results stay on the device (set under the lock)
        # anytime calls with a deadline, and how many returned after it
        self.deadline_stats = {"calls": 0, "missed": 0}

    # lifecycle -----------------------------------------------------------------------------
    def close(self) -> None:
        """Release the runner's sessions or engines; the pipeline cannot run afterwards.

        Calls running in other threads when ``close()`` is called finish first: ``close()``
        waits for them (an ``anytime`` generator counts while it computes an exit, not while it
        waits between two ``next``). Any call after, and an ``anytime`` generator resumed after,
        raises :class:`MescError` "the pipeline is closed"."""
        with self._state:
            self._closed = True
            while self._busy:
                self._state.wait()
        self.runner.deactivate()

    @contextlib.contextmanager
    def _exclusive(self):
        me = threading.get_ident()
        if self._owner == me:
            raise MescError("this thread is already running a call on this pipeline (an unfinished "
                            "anytime() generator?): finish or close it first, or load a second pipeline")
        with self._lock:
            self._owner = me
            try:
                yield
            finally:
                self._owner = None

    def _check_open(self) -> None:
        # the runner's sessions are gone: running would fail deep inside the backend
        if self._closed:
            raise MescError("the pipeline is closed; load the package again (mesc.load) to run it")

    @contextlib.contextmanager
    def _running(self):
        """Use the runner inside this block: refused once closed, and close() waits for it."""
        with self._state:
            self._check_open()
            self._busy += 1
        try:
            yield
        finally:
            with self._state:
                self._busy -= 1
                if not self._busy:
                    self._state.notify_all()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self):
        return (f"<mesc Pipeline {self.pkg.root} exits={self.exit_names} backend={self.runner.backend} "
                f"device={self.runner.device} policy={'in-graph' if self.in_graph else 'host'}>")

    # exits and thresholds ----------------------------------------------------------------
    @property
    def exit_names(self) -> list[str]:
        return [ex.name for ex in self.pkg.exits]

    def thresholds(self, exit) -> dict:
        """The thresholds the exit's policy kind reads (MESS: th_pix and th_img; FFT: lo and hi;
        the mean confidences and the learned network: th_img)."""
        p = self.pkg.policy(exit)
        return {k: p.get(k) for k in KIND_THRESHOLDS[policy_kind(p)]}

    def set_thresholds(self, exit, th_pix: float | None = None, th_img: float | None = None,
                       lo: float | None = None, hi: float | None = None) -> None:
        """Change one exit's thresholds (by name or position) for later calls. Sessions and
        engines stay as they are: th_pix is a graph input, th_img (and the FFT policy's lo and
        hi) host comparisons. ``None`` leaves that threshold as it is; th_pix and th_img must be
        real numbers in [0, 1], lo and hi finite reals; a threshold the exit's policy kind does
        not read is refused."""
        ex = self.pkg.exit(exit)
        name, kind = ex.name, policy_kind(ex.policy)
        settings = {}
        for key, v in (("th_pix", th_pix), ("th_img", th_img), ("lo", lo), ("hi", hi)):
            if v is None:
                continue
            if key not in KIND_THRESHOLDS[kind]:
                raise InputError(f"exit '{name}' runs the {kind} policy, which reads "
                                 f"{' and '.join(KIND_THRESHOLDS[kind])}, not {key}")
            # bool is an int to Python, and NaN passes no comparison: both would slip through
            bounded = key in ("th_pix", "th_img")
            if isinstance(v, bool) or not isinstance(v, numbers.Real) or not (
                    0.0 <= v <= 1.0 if bounded else np.isfinite(v)):
                raise InputError(f"exit '{name}': {key} must be a real number "
                                 f"{'in [0, 1]' if bounded else '(finite)'}, got {v!r}")
            settings[key] = float(v)
        self.pkg.set_policy(exit, **settings)
        self._plans.clear()  # their steps hold the exits as they were
        if "th_pix" in settings and name in self._th_handles:
            # the typed view was rebuilt by set_policy: read the new value from it
            self._th_handles[name] = self._upload_th_pix(self.pkg.exit(name))

    def set_enabled(self, exit, enabled: bool) -> None:
        """Keep or drop an exit from input-dependent runs (what ``mesc calibrate --write``
        records as ``"enabled"``); a dropped exit's head is not run at all."""
        self.pkg.set_enabled(exit, enabled)
        self._plans.clear()

    def _th_handle(self, ex):
        h = self._th_handles.get(ex.name)
        if h is None:
            h = self._th_handles[ex.name] = self._upload_th_pix(ex)
        return h

    def _upload_th_pix(self, ex):
        # a slot of its own per exit: a new value overwrites the old one in place, so segments
        # (and CUDA graphs) keep reading the same device address
        return self.runner.upload(np.array([ex.policy["th_pix"]], np.float32), slot=f"th_pix:{ex.name}")

    # inputs ----------------------------------------------------------------------------------
    def prepare(self, images) -> tuple[np.ndarray, bool]:
        """(batch, whether a single image was given). The batch is what the first segment to run
        takes: uint8 N x H x W x C where the package has an entry segment (normalised on the
        device; no per-pixel work here, and a single image or a C-contiguous batch is not even
        copied), else float32 N x C x H x W (uint8 images normalised here, on the host). A
        tensor handed over by ``__dlpack__`` or ``__cuda_array_interface__`` is read where it
        lies: CPU memory as a numpy view (no copy), CUDA memory as a
        :class:`~mesc.runtime.device_input.DeviceArray` the runner copies on the device (see
        :mod:`mesc.runtime.device_input`)."""
        if is_external(images):
            stream = getattr(self.runner, "stream", None) if self.runner.is_active else None
            images = take_external(images, None if stream is None else stream.ptr)
            if isinstance(images, DeviceArray):
                return self._check_device_batch(images), False
        if isinstance(images, (list, tuple)):
            if not images:
                raise InputError("no images given")
            parts = []
            for i, im in enumerate(images):
                try:
                    part = self.prepare(im)[0]
                    if isinstance(part, DeviceArray):
                        raise InputError("a CUDA tensor is passed alone, as one N x C x H x W float32 batch")
                    parts.append(part)
                except InputError as err:
                    raise InputError(f"images[{i}]: {err}") from None
            if len({p.dtype for p in parts}) > 1:
                # float batches among uint8 images: the one batch is float, normalised here as a
                # package without an entry does (bit for bit what the entry computes)
                parts = [self.host_normalize(p) if p.dtype == np.uint8 else p for p in parts]
            return np.concatenate(parts), False
        if not isinstance(images, np.ndarray):
            raise InputError(f"expected a numpy array, got {type(images).__name__}")
        x = images
        if x.ndim == 3 and x.dtype == np.uint8:
            self._check_size(x.shape[2], x.shape[0], x.shape[1], "H x W x C", x.shape)
            if self.entry is not None:
                return np.ascontiguousarray(x)[None], True  # a view where x is contiguous
            return normalize(x, self.pkg.input.normalization)[None], True
        if x.ndim == 4 and x.dtype == np.uint8:
            self._check_size(x.shape[3], x.shape[1], x.shape[2], "N x H x W x C", x.shape)
            if x.shape[0] == 0:
                raise InputError("the batch is empty (N = 0)")
            return (np.ascontiguousarray(x) if self.entry is not None else self.host_normalize(x)), False
        if x.ndim == 4:
            if x.dtype != np.float32:
                raise InputError(f"a batch must be float32 N x C x H x W (already normalised), got {x.dtype}; "
                                 f"use x.astype(np.float32), or pass uint8 H x W x C images to have them normalised")
            self._check_size(x.shape[1], x.shape[2], x.shape[3], "N x C x H x W", x.shape)
            if x.shape[0] == 0:
                raise InputError("the batch is empty (N = 0)")
            # min and max carry any NaN or inf of an image, with no array the size of the batch
            flat = x.reshape(len(x), -1)
            bad = ~(np.isfinite(flat.min(1)) & np.isfinite(flat.max(1)))
            if bad.any():
                raise InputError(f"the float32 batch holds NaN or infinite values (image(s) "
                                 f"{np.flatnonzero(bad).tolist()[:10]} of {len(x)}); inputs must be finite")
            return np.ascontiguousarray(x), False
        c, h, w = self.chw
        raise InputError(f"expected one uint8 image H x W x C ({h} x {w} x {c}), a uint8 batch N x H x W x C or a "
                         f"float32 batch N x C x H x W (N x {c} x {h} x {w}); got {x.dtype} with shape {tuple(x.shape)}")

    def host_normalize(self, x: np.ndarray) -> np.ndarray:
        """uint8 N x H x W x C images -> the float32 N x C x H x W batch the first chunk takes,
        normalised on the host: bit for bit what the package's entry segment computes, and what a
        package without one does with uint8 input."""
        norm = self.pkg.input.normalization
        return np.stack([normalize(im, norm) for im in x])

    def _check_device_batch(self, d: DeviceArray) -> DeviceArray:
        try:
            u8 = d.dtype == np.uint8 and d.ndim == 4 and self.entry is not None
            if not u8 and (d.dtype != np.float32 or d.ndim != 4):
                raise InputError(f"a CUDA tensor must be a float32 N x C x H x W batch (already normalised)"
                                 + (" or a uint8 N x H x W x C batch" if self.entry is not None else
                                    " (this package has no entry segment to normalise uint8 images on the device)")
                                 + f", got {d.dtype} with shape {d.shape}")
            if u8:
                self._check_size(d.shape[3], d.shape[1], d.shape[2], "N x H x W x C", d.shape)
            else:
                self._check_size(d.shape[1], d.shape[2], d.shape[3], "N x C x H x W", d.shape)
            if d.shape[0] == 0 or (self.static_batch and d.shape[0] % self.static_batch):
                raise InputError(f"a CUDA batch of {d.shape[0]} images cannot run on this package"
                                 + (f" (static batch of {self.static_batch}: pass a multiple of it)"
                                    if self.static_batch else ""))
        except InputError:
            d.release()  # refused: the producer gets its memory back now
            raise
        return d

    def _check_size(self, c_got, h_got, w_got, layout, shape):
        c, h, w = self.chw
        if c_got != c:
            raise InputError(f"the package takes {c} channels, got {c_got} (shape {tuple(shape)} read as {layout})")
        if (h_got, w_got) != (h, w):
            raise InputError(f"the package takes {h} x {w} (H x W) images, got {h_got} x {w_got} "
                             f"(shape {tuple(shape)} read as {layout})")

    # plans -----------------------------------------------------------------------------------
    def plan(self, exit=None, logits: bool = False, all_exits: bool = False, entry: bool = False) -> list[Step]:
        """Steps to run. Input-dependent plans leave out the heads of exits that calibration
        disabled (``"enabled": false``): their chunks still run for the deeper exits, their
        heads and policies never do. ``all_exits`` keeps them (calibration measures every exit).
        ``entry``: the batch is uint8 and starts at the entry segment; otherwise the plan starts
        at the first chunk, on the float input."""
        key = (None if exit is None else self.pkg.exit(exit).name, logits, all_exits, bool(entry))
        if key not in self._plans:
            if exit is not None:
                segments = self.pkg.segments_until(exit)
            else:
                off = set() if all_exits else {e.segment for e in self.pkg.exits if not e.enabled}
                segments = [s for s in self.pkg.segments if s.name not in off]
            if not entry:
                segments = [s for s in segments if s.kind != "entry"]
            self._plans[key] = build_plan(self.pkg, segments, self.in_graph, logits)
        return self._plans[key]

    def _runs_entry(self, x) -> bool:
        """Whether batch ``x`` (as :meth:`prepare` gives it) starts at the entry segment."""
        return self.entry is not None and x.dtype == np.uint8

    def _input_of(self, x) -> str:
        """The tensor name batch ``x`` feeds."""
        return self.pkg.input.entry.input if self._runs_entry(x) else self.input_name

    def time_segments(self, x: np.ndarray, clock=None) -> dict:
        """Milliseconds of every segment of the package on batch ``x`` (what a call takes: uint8
        images time the entry segment too, where the package has one; a float32 N x C x H x W
        batch skips it), run as an input-dependent call runs them with every image reporting at
        every exit:

        * each segment's run, timed on ``clock`` (``start()`` -> token, ``stop(token)`` -> ms;
          default the host clock); a tail runs as if every image left at its exit;
        * ``"decision:<exit>"``: the exit decision on the host (the copy of the confidences;
          without an in-graph policy the logits and the numpy policy).

        Heads of exits that calibration disabled run too, so that their cost stays known for a
        later calibration. Where the runner measures segments on the device
        (``Runner.segment_times``), its figures replace the clock's."""
        x, _ = self.prepare(x)
        rows = np.arange(len(x))
        parts = _Parts(clock)
        with self._exclusive(), self._running():
            self.runner.timing = True
            try:
                plan = self.plan(None, all_exits=True, entry=self._runs_entry(x))
                for _ in self._walk(self._group_input(x, rows), plan, False, len(x), parts=parts):
                    pass
            finally:
                self.runner.timing = False
            device_ms = self.runner.segment_times()
        if device_ms:
            parts.ms.update({k: v for k, v in device_ms.items() if k in parts.ms})
        return parts.ms

    def _groups(self, n: int):
        """Batch positions per run: all at once with a dynamic batch, else chunks of the static
        batch size (the last one padded)."""
        if self.static_batch is None:
            return [np.arange(n)]
        b = self.static_batch
        if n != b and not self._warned_static:
            self._warned_static = True
            how = "image by image" if b == 1 else f"in batches of {b} (the last one padded)"
            warnings.warn(f"the package has a static batch of {b}; running {n} images {how}. "
                          f"Export with --dynamic-batch to batch freely and let exited images leave the batch.",
                          stacklevel=3)
        return [np.arange(s, min(s + b, n)) for s in range(0, n, b)]

    def _group_input(self, x, rows):
        if len(rows) == len(x) and (self.static_batch is None or len(rows) == self.static_batch):
            return x  # every row stays: no copy
        if isinstance(x, DeviceArray):  # static-batch groups of a device batch: views, never padded
            return x.rows(int(rows[0]), int(rows[-1]) + 1)
        if self.static_batch is None or len(rows) == self.static_batch:
            return x[rows]
        pad = np.zeros((self.static_batch - len(rows), *x.shape[1:]), x.dtype)
        return np.concatenate([x[rows], pad])

    # the walk -------------------------------------------------------------------------------
    def _walk(self, x: np.ndarray, plan: list[Step], by_policy: bool, real: int, need_conf: bool = True,
              want_logits: bool = False, parts: _Parts | None = None) -> Iterator[_ExitEvent]:
        """Run ``plan`` on batch ``x`` (its first ``real`` rows are images, the rest padding),
        yielding at each exit the images that report there. With ``by_policy`` an image reports
        at the first exit whose policy lets it go (the plan's last exit takes the rest) and then
        leaves; otherwise every image reports at every exit. ``parts`` times each segment's run,
        each decision and each tail apart (see :meth:`time_segments`)."""
        parts = parts or _UNTIMED
        run, t0 = self.runner, now()
        env = {self._input_of(x): self._upload(x)}
        pos = np.arange(x.shape[0])  # input batch position of each row of the live tensors
        undecided = pos < real  # rows still waiting for their exit (padding never waits)
        last_head = max(i for i, s in enumerate(plan) if s.exit is not None)
        seg_ms = {}
        for i, step in enumerate(plan):
            ts = now()
            feeds = {n: env[n] for n in step.feeds}
            if step.th_input:
                feeds[step.th_input] = self._th_handle(step.exit)
            with parts.device(step.segment.name):
                env.update(run.run(step.segment, feeds, step.fetch))
            ex = step.exit
            if ex is None:
                for n in step.release:
                    env.pop(n, None)
                seg_ms[step.segment.name] = ms_since(ts)
                continue
            # The exit decision: confidences (or, without the in-graph policy, logits) to host.
            # Where no decision is made here (the plan's last exit, budgeted or anytime calls),
            # the confidences' copy is queued and read with the labels: no wait of its own.
            host_logits = conf_read = conf = None
            decide = by_policy and i != last_head
            with parts.host(f"decision:{ex.name}"):
                if self.in_graph:
                    conf_read = run.fetch(env[ex.confidence])
                    if decide or parts is not _UNTIMED:
                        conf, conf_read = self._confidences(conf_read), None
                else:
                    host_logits = run.download(env[ex.logits])
                    if need_conf:
                        host_labels, conf = host_policy.decide(host_logits, ex.policy)
                    else:  # budgeted without an in-graph policy: the labels are all that is asked
                        host_labels, conf = host_policy.labels_only(host_logits), None
            seg_ms[step.segment.name] = ms_since(ts)
            if decide:
                leave = undecided & exit_decision(conf, ex.policy)
            else:
                leave = undecided.copy()
            rows = np.flatnonzero(leave)
            if step.tail is not None:
                labels, logits = self._run_tail(step, env, rows, len(pos), seg_ms, parts)
            elif self.in_graph:
                labels = self._download_rows(env[ex.labels], rows, len(pos))
                logits = self._download_rows(env[ex.logits], rows, len(pos)) if want_logits else None
            else:
                labels = host_labels[rows]
                logits = host_logits[rows] if want_logits else None
            src = ex.policy_logits or ex.logits
            policy_logits = (self._download_rows(env[src], rows, len(pos))
                             if want_logits and src != ex.logits else None)
            if conf_read is not None:
                conf = self._confidences(conf_read)
            confs = {} if conf is None else {int(pos[r]): float(conf[r]) for r in np.flatnonzero(undecided)}
            yield _ExitEvent(ex, pos[rows], labels, logits, policy_logits, confs, dict(seg_ms),
                             ms_since(t0))
            if step.tail is not None:  # only the images that left here took part in the tail
                seg_ms.pop(step.tail.name, None)
            for n in step.release:
                env.pop(n, None)
            if not by_policy:
                continue
            undecided &= ~leave
            if not undecided.any():
                return
            if self.dynamic_batch and leave.any():
                keep = np.flatnonzero(undecided)
                env = {n: run.take(h, keep) for n, h in env.items()}
                pos, undecided = pos[keep], undecided[keep]

    def _upload(self, x):
        return self.runner.upload_device(x) if isinstance(x, DeviceArray) else self.runner.upload(x)

    @staticmethod
    def _confidences(read) -> np.ndarray:
        return read.get().reshape(-1).astype(np.float64)

    def _run_tail(self, step: Step, env: dict, rows, batch: int, seg_ms: dict, parts: _Parts):
        """The exit's tail for the rows that leave: labels (and logits when fetched) on the host.
        With a dynamic batch only those rows run; a static batch runs whole and is cut after."""
        ex, run = step.exit, self.runner
        if len(rows) == 0:
            dims = next(o.shape[1:] for o in step.tail.outputs if o.name == ex.labels)
            return np.zeros((0, *[d if isinstance(d, int) else 0 for d in dims]), np.int32), None
        ts = now()
        subset = self.dynamic_batch and len(rows) != batch
        feeds = {n: run.take(env[n], rows) if subset else env[n] for n in step.tail_feeds}
        with parts.device(step.tail.name):
            outs = run.run(step.tail, feeds, step.tail_fetch)
        if subset:
            got = [run.copy_out(outs[n]) if self._device_out else run.download(outs[n]) for n in step.tail_fetch]
        else:
            got = [self._download_rows(outs[n], rows, batch) for n in step.tail_fetch]
        seg_ms[step.tail.name] = ms_since(ts)
        return got[0], (got[1] if len(got) > 1 else None)

    def _download_rows(self, handle, rows, batch):
        """Only the rows that leave cross to the host; all of them in one copy when all leave.
        With ``device_output`` they stay on the device, in memory of their own."""
        if self._device_out:
            return self.runner.copy_out(handle, None if len(rows) == batch else rows)
        if len(rows) == 0:
            shape = self.runner.shape(handle)
            return np.zeros((0, *shape[1:]), np.int32)
        if len(rows) == batch:
            return self.runner.download(handle)
        return self.runner.download(self.runner.take(handle, rows))

    # modes -------------------------------------------------------------------------------------
    def __call__(self, images, exit=None, logits: bool = False, device_output: bool = False):
        """Predict. Input-dependent (default): each image leaves at the first exit whose policy
        is confident enough. Budgeted (``exit=k``, name or position): run only what exit k needs.
        Returns one :class:`Result` for a single H x W x C image, else a list (batch order).

        ``device_output=True`` (a runner on a CUDA stream, a package with the in-graph policy)
        leaves each result's labels (and logits) on the device, in memory of their own, as
        :class:`~mesc.runtime.device_output.DeviceResult` objects that DLPack consumers take without a
        copy (``torch.from_dlpack(r.labels)``)."""
        self._check_open()
        if device_output and not self.in_graph:
            raise InputError("device_output needs a package with the in-graph policy (its labels are made on the "
                             "device); this one decides on the host")
        x, single = self.prepare(images)
        plan = self.plan(exit, logits, entry=self._runs_entry(x))
        results = [None] * len(x)
        try:
            with self._exclusive(), self._running():
                self._device_out = bool(device_output)
                try:
                    for group in self._groups(len(x)):
                        seen: dict = {}
                        walk = self._walk(self._group_input(x, group), plan, exit is None, len(group),
                                          need_conf=exit is None, want_logits=logits)
                        for ev in walk:
                            self._collect(ev, group, seen, results, final=True)
                finally:
                    self._device_out = False
        finally:
            if isinstance(x, DeviceArray):  # queued copies out of it ended at the call's last wait
                x.release()
        return results[0] if single else results

    def anytime(self, images, deadline: float | None = None, logits: bool = False, all_exits: bool = False,
                latency=None):
        """Yield every exit's prediction in order (a :class:`Result`, or a list for a batch).

        With ``deadline`` (seconds from the call), a segment is started only if the recorded
        latencies say the next exit can still be reached in time: the prediction before it is
        then marked ``final`` and nothing more runs. ``latency`` is the per-segment milliseconds
        to predict with (a dict) or a ``manifest["latency"]`` key (``mesc bench --record`` writes
        them); by default the entry recorded for this backend and device. Without any, the walk
        stops at the first exit reached after the deadline (which may overrun it). The first
        exit always runs: a call has to return something. Whether each call met its deadline
        is counted in :attr:`deadline_stats`.
        A closed pipeline or a bad input is refused here, not at the first ``next``.
        """
        self._check_open()
        x, single = self.prepare(images)
        if deadline is not None and (isinstance(deadline, bool) or not isinstance(deadline, numbers.Real)
                                     or not deadline >= 0):
            raise InputError(f"deadline must be a number of seconds >= 0, got {deadline!r}")
        ms = self.segment_latency(latency) if deadline is not None else None
        return self._anytime(x, single, deadline, logits, all_exits, ms)

    def segment_latency(self, latency=None) -> dict | None:
        """Per-segment milliseconds for deadline decisions: ``latency`` itself (a dict), the
        manifest entry it names, or (None) the entry recorded for this runner's backend and
        device — the exact ``backend/device`` key, else the only key that starts with it."""
        recorded = {k: dict(rec.ms) for k, rec in self.pkg.latency.items()}
        if isinstance(latency, dict):
            return {str(k): float(v) for k, v in latency.items()}
        if latency is not None:
            if latency not in recorded:
                raise InputError(f"no latencies recorded under {latency!r} in {self.pkg.root}; recorded: "
                                 f"{', '.join(sorted(recorded)) or 'none (run mesc bench --record)'}")
            return recorded[latency]
        prefix = f"{self.runner.backend}/{self.runner.device}"
        if prefix in recorded:
            return recorded[prefix]
        mine = [k for k in recorded if k.startswith(prefix + "/")]
        return recorded[mine[0]] if len(mine) == 1 else None

    def _step_ms(self, plan, latency) -> list[float | None]:
        """Predicted milliseconds from the step after each exit's step to the next exit's step
        (its tail included); None where a segment has no recorded latency."""
        out, acc = [], 0.0
        for step in plan:
            for seg in (step.segment, step.tail):
                if seg is None:
                    continue
                v = latency.get(seg.name) if latency else None
                acc = None if acc is None or v is None else acc + float(v)
            if step.exit is not None:
                out.append(acc)
                acc = 0.0
        return out

    def _anytime(self, x, single, deadline, logits, all_exits, latency=None):
        try:
            with self._exclusive():
                yield from self._anytime_steps(x, single, deadline, logits, all_exits, latency)
        finally:
            if isinstance(x, DeviceArray):
                x.release()

    def _anytime_steps(self, x, single, deadline, logits, all_exits, latency):
        plan = self.plan(None, logits, all_exits, entry=self._runs_entry(x))
        groups = self._groups(len(x))
        t0 = now()
        # Static-batch groups advance in lockstep so that each yield covers every image.
        walks = [self._walk(self._group_input(x, g), plan, False, len(g), want_logits=logits) for g in groups]
        seen = [dict() for _ in groups]
        n_exits = sum(1 for s in plan if s.exit is not None)
        ahead = self._step_ms(plan, latency) if deadline is not None else None
        try:
            for k in range(n_exits):
                results = [None] * len(x)
                # between two next() the generator holds nothing: close() may run, and a
                # generator resumed after it is refused here as any call after close is
                with self._running():
                    for lane, (g, walk, s) in enumerate(zip(groups, walks, seen)):
                        self.runner.lane = lane
                        self._collect(next(walk), g, s, results, final=False)
                final = k == n_exits - 1
                if deadline is not None and not final:
                    spent = now() - t0
                    nxt, done = ahead[k + 1], ahead[: k + 1]
                    # this call's own pace: the recorded medians leave out the host's share (decisions,
                    # copies, Python) and another load on the machine, so scale them by how much
                    # longer the exits so far took than recorded (never below 1)
                    pace = 1.0
                    if None not in done and sum(done) > 0:
                        pace = max(1.0, spent * 1e3 / (sum(done) * len(groups)))
                    # without a record for the next exit, stop only once the deadline has passed
                    final = (spent >= deadline if nxt is None
                             else spent + pace * nxt * len(groups) / 1e3 > deadline)
                if final and deadline is not None:
                    self.deadline_stats["calls"] += 1
                    self.deadline_stats["missed"] += int(now() - t0 > deadline)
                for r in results:
                    r.final = final
                yield results[0] if single else results
                if final:
                    return
        finally:
            for walk in walks:
                walk.close()
            self.runner.lane = 0

    def tensors(self, images) -> dict:
        """Every segment's every output on the host, by name (with the input): for verifying
        an export and for debugging, not for speed."""
        self._check_open()
        x, _ = self.prepare(images)
        try:
            with self._exclusive(), self._running():
                return self._tensors(x)
        finally:
            if isinstance(x, DeviceArray):
                x.release()

    def _tensors(self, x) -> dict:
        env = {self._input_of(x): self._upload(x)}
        for seg in self.pkg.segments:
            if seg.kind == "entry" and not self._runs_entry(x):
                continue  # float input is the entry's output already
            ex = next((e for e in self.pkg.exits if e.segment == seg.name), None)
            feeds = {t.name: env[t.name] for t in seg.inputs
                     if ex is None or t.name != ex.th_pix_input}
            if ex is not None and ex.th_pix_input in {t.name for t in seg.inputs}:
                feeds[ex.th_pix_input] = self._th_handle(ex)
            env.update(self.runner.run(seg, feeds, [o.name for o in seg.outputs]))
        return {n: self.runner.download(h) for n, h in env.items()}

    def _collect(self, ev: _ExitEvent, group, seen: dict, results: list, final: bool):
        for p, c in ev.confidences.items():
            seen.setdefault(p, {})[ev.exit.name] = c
        for j, p in enumerate(ev.rows):
            confs = dict(seen.get(int(p), {}))
            confs.setdefault(ev.exit.name, None)
            results[group[p]] = Result(
                labels=ev.labels[j], exit=ev.exit.name, exit_index=ev.exit.position,
                confidences=confs, timings={"segments": dict(ev.segments_ms), "total_ms": ev.elapsed_ms},
                final=final, logits=None if ev.logits is None else ev.logits[j],
                policy_logits=None if ev.policy_logits is None else ev.policy_logits[j])
