"""``mesc serve PKG --model-repository DIR``: the package as a model of a Triton model repository,
for a stock ``tritonserver`` (the Triton containers, Triton on Jetson) instead of PyTriton.

``DIR/<name>/`` gets ``config.pbtxt`` (inputs, outputs, batching and instances of ``mesc serve``),
``1/model.py`` (Triton's Python backend running :mod:`mesc.serving.python_backend`), ``1/package/``
(a copy of the package) and ``README.md`` (how to run it). One Python-backend model runs the whole
chain: a Triton ensemble cannot branch on the exit decision, so a model per segment would run
every segment of every image. Writing needs neither PyTriton nor a GPU, so a repository can be
written on any machine and copied to the server or Jetson that runs it.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

from mesc.errors import MescError
from mesc.package.outputs import TRITON_MODEL_MARKER
from mesc.serving.requests import CONFIDENCES, ENCODED, EXIT, EXIT_NAME, IMAGES, LABELS, MAX_ENCODED_BYTES

VERSION = "1"  # the model version folder Triton loads
# names the model folder as mesc's, so a later --force may replace it (mesc.package.outputs)
MARKER, WRITTEN_BY = TRITON_MODEL_MARKER[0], TRITON_MODEL_MARKER[1]["written_by"]
DEFAULT_MAX_BATCH = 16


@dataclasses.dataclass
class RepositoryOptions:
    name: str | None = None  # the Triton model name; default: the package folder's name
    backend: str = "auto"
    device: str = "cpu"  # cpu: KIND_CPU instances; cuda or cuda:N: KIND_GPU (on every GPU, or GPU N)
    target: str | None = None
    precision: str | None = None
    max_batch: int | None = None  # default: 16, or the TensorRT engines' largest batch when smaller
    max_queue_delay_us: int = 1000
    instances: int = 1  # per GPU for a GPU device
    max_encoded_bytes: int = MAX_ENCODED_BYTES
    force: bool = False


@dataclasses.dataclass
class ModelShape:
    """What config.pbtxt declares, from the package."""

    hwc: tuple
    exits: list
    static_batch: int | None  # None: the package takes any batch
    max_batch: int  # images per executed batch (dynamic) or per request (static)


def gpu_of(device: str) -> tuple:
    """``("cpu", None)``, ``("gpu", None)`` for every GPU or ``("gpu", N)``; other devices refused."""
    text = str(device).strip().lower()
    if text == "cpu":
        return "cpu", None
    if text == "cuda":
        return "gpu", None
    if text.startswith("cuda:") and text[5:].isdigit():
        return "gpu", int(text[5:])
    raise MescError(f"--device {device}: expected cpu, cuda or cuda:N")


def engine_batch_ceiling(pkg, opts: RepositoryOptions) -> int | None:
    """The largest batch every TensorRT build the instances may load takes (``mesc build
    --max-batch``), or None where they run ONNX Runtime or no build records one."""
    if gpu_of(opts.device)[0] != "gpu" or opts.backend == "onnxruntime":
        return None
    tops = []
    for target, builds in pkg.engines.items():
        if opts.target and target != opts.target:
            continue
        for build in builds.values():
            if opts.precision and opts.precision not in (build.variant, build.entry.get("precision")):
                continue
            batch = build.entry.get("batch") or {}
            if isinstance(batch.get("max"), int):
                tops.append(batch["max"])
    return min(tops) if tops else None


def model_shape(pkg, opts: RepositoryOptions) -> ModelShape:
    c, h, w = (int(d) for d in pkg.input.shape[1:])
    static = pkg.input.static_batch
    ceiling = None if static else engine_batch_ceiling(pkg, opts)
    max_batch = opts.max_batch
    if max_batch is None:
        max_batch = min(DEFAULT_MAX_BATCH, ceiling) if ceiling else DEFAULT_MAX_BATCH
    elif ceiling and max_batch > ceiling:
        raise MescError(f"--max-batch {max_batch}: the package's TensorRT engines take at most {ceiling} images "
                        f"(mesc build --max-batch); pass --max-batch {ceiling} or less, or rebuild the engines")
    if max_batch < 1:
        raise MescError("--max-batch must be at least 1")
    return ModelShape((h, w, c), [ex.name for ex in pkg.exits], static, max_batch)


def _dims(dims) -> str:
    return "[ " + ", ".join(str(d) for d in dims) + " ]"


def _tensor(name: str, dtype: str, dims, optional: bool = False) -> str:
    extra = "\n    optional: true" if optional else ""
    return f"  {{\n    name: \"{name}\"\n    data_type: {dtype}\n    dims: {_dims(dims)}{extra}\n  }}"


def config_pbtxt(name: str, shape: ModelShape, opts: RepositoryOptions) -> str:
    """The model's config.pbtxt. A dynamic-batch package: ``max_batch_size`` and Triton's dynamic
    batcher; a static-batch one: ``max_batch_size: 0`` (each request carries its own N, which the
    pipeline runs its batch size at a time), so the dims hold the batch dimension."""
    lead = [] if shape.static_batch is None else [-1]
    h, w, c = shape.hwc
    inputs = [_tensor(IMAGES, "TYPE_UINT8", lead + [h, w, c], optional=True),
              _tensor(ENCODED, "TYPE_STRING", lead + [1], optional=True)]
    outputs = [_tensor(LABELS, "TYPE_INT32", lead + [-1, -1]), _tensor(EXIT, "TYPE_INT32", lead + [1]),
               _tensor(EXIT_NAME, "TYPE_STRING", lead + [1]),
               _tensor(CONFIDENCES, "TYPE_FP32", lead + [len(shape.exits)])]
    kind, gpu = gpu_of(opts.device)
    group = f"    count: {opts.instances}\n    kind: {'KIND_GPU' if kind == 'gpu' else 'KIND_CPU'}"
    if gpu is not None:
        group += f"\n    gpus: [ {gpu} ]"
    params = {"backend": opts.backend, "target": opts.target or "", "precision": opts.precision or "",
              "max_encoded_bytes": str(opts.max_encoded_bytes), "max_images": str(shape.max_batch)}
    lines = [
        f"# Written by {WRITTEN_BY}: one Python-backend model runs the package's whole early-exit chain.",
        f"# Inputs: send exactly one of {IMAGES} and {ENCODED} (PNG/JPEG files); request parameters exit,",
        "# th_img, th_pix. The parameters below are read by mesc.serving.python_backend.",
        f"name: \"{name}\"",
        "backend: \"python\"",
    ]
    if shape.static_batch is None:
        lines += [f"max_batch_size: {shape.max_batch}",
                  f"dynamic_batching {{\n  max_queue_delay_microseconds: {opts.max_queue_delay_us}\n}}"]
    else:
        lines += [f"# a static-batch package (batch {shape.static_batch}): no Triton batching; at most "
                  f"{shape.max_batch} images per request", "max_batch_size: 0"]
    lines += ["input [\n" + ",\n".join(inputs) + "\n]", "output [\n" + ",\n".join(outputs) + "\n]",
              f"instance_group [\n  {{\n{group}\n  }}\n]"]
    lines += [f"parameters {{\n  key: \"{k}\"\n  value: {{ string_value: \"{v}\" }}\n}}" for k, v in params.items()]
    return "\n".join(lines) + "\n"


MODEL_PY = '''"""Triton Python-backend model: the mesc package in ./package, run by mesc's runtime.

Written by {written_by} (mesc {version}). The Python that Triton's Python backend runs needs
mesc and its runtime: see ../README.md.
"""
try:
    from mesc.serving.python_backend import TritonPythonModel  # noqa: F401
except ImportError as err:  # the one line Triton's log shows for a missing install
    raise ImportError("this model needs mesc (with onnxruntime, or TensorRT for engines) in the Python "
                      "that Triton's Python backend runs; see README.md beside config.pbtxt: " + str(err)) from err
'''


def readme(name: str, repo: Path, shape: ModelShape, opts: RepositoryOptions, version: str) -> str:
    h, w, c = shape.hwc
    kind, _ = gpu_of(opts.device)
    return README_TEMPLATE.format(name=name, repo=repo.name, h=h, w=w, c=c, version=version,
                                  exits=", ".join(shape.exits), n_exits=len(shape.exits),
                                  batching=("dynamic batching, up to %d images per executed batch" % shape.max_batch
                                            if shape.static_batch is None else
                                            "a static-batch package: max_batch_size 0, up to %d images per request"
                                            % shape.max_batch),
                                  instances=f"{opts.instances} instance(s) {'per GPU' if kind == 'gpu' else 'on CPU'}",
                                  backend=opts.backend)


README_TEMPLATE = """# Triton model `{name}` (written by mesc {version})

One Python-backend model runs the mesc package in `1/package/` with mesc's runtime
(`1/model.py` imports `mesc.serving.python_backend`): the whole early-exit chain in one model,
{batching}, {instances}, runtime backend `{backend}`.

- Inputs (send exactly one): `images` uint8 N x {h} x {w} x {c}, or `encoded` BYTES N x 1 (PNG/JPEG).
- Outputs: `labels` int32 N x H' x W', `exit` int32 N x 1 (position among {exits}), `exit_name`
  BYTES N x 1, `confidences` float32 N x {n_exits} (NaN where an exit was not evaluated).
- Request parameters: `exit` (budgeted mode: a name or position), `th_img`, `th_pix` (one value,
  or one per exit, comma-separated). A bad request gets its own error; the others run.

The Python that Triton's Python backend embeds must import mesc and its runtime: install them
into it before starting the server. `pip install <mesc wheel or source>` brings ONNX Runtime for
the CPU; for ONNX Runtime on the GPU add the `[gpu]` extra and then `pip uninstall -y onnxruntime`
(both install the same module, the last one wins); for TensorRT engines the `[trt]` extra, with
engines built by `mesc build` for the GPU and TensorRT version that serve them. Check with
`python3 -c "import mesc.serving.python_backend"` in the same environment.

## Triton container (x86-64 or arm64 server)

```sh
docker run --rm --gpus all -p8000:8000 -p8001:8001 -p8002:8002 \\
    -v $PWD/{repo}:/models -v /path/to/mesc:/src/mesc:ro \\
    nvcr.io/nvidia/tritonserver:<yy.mm>-py3 \\
    bash -c "pip install '/src/mesc[gpu]' && pip uninstall -y onnxruntime && tritonserver --model-repository=/models"
```

The container's `python3` is the one its Python backend runs; for a reusable image put the
`pip install` in a Dockerfile `FROM` that image. A CPU-only host: drop `--gpus all` and the
`[gpu]` steps, and write the repository with `--device cpu`.

## Triton on Jetson

- JetPack 6: the `nvcr.io/nvidia/tritonserver:<yy.mm>-py3-igpu` container, run as above with
  `--runtime nvidia` instead of `--gpus all`.
- JetPack 5: the Triton release tarball for JetPack (the release notes' "Jetson JetPack Support"),
  unpacked to e.g. `/opt/tritonserver`; its Python backend runs the system Python 3.8:
  `/opt/tritonserver/bin/tritonserver --model-repository=$PWD/{repo} --backend-directory=/opt/tritonserver/backends`.
  The modules this model imports keep to Python 3.8 for this.

Install mesc and its runtime into that Python (TensorRT comes with JetPack: `python3 -c "import
tensorrt"`), build the engines on the Jetson (`mesc build PKG --target host`, then write the
repository again with `--device cuda:0 --backend tensorrt`). Triton's Python backend on Jetson
passes tensors through CPU memory, which is what this model reads and writes.

## Check it

```sh
curl -s localhost:8000/v2/models/{name}/ready -o /dev/null -w '%{{http_code}}\\n'   # 200 once loaded
mesc client grpc://localhost:8001 --model {name}                                  # one grey test image
```
"""


def _ignore_hidden(directory, names):
    # staging folders (.NAME.tmp-*) and other hidden entries are not the package
    return [n for n in names if n.startswith(".")]


def write_repository(package, repository, options: RepositoryOptions | None = None, echo=print) -> Path:
    """Write the package as model ``<name>`` of the Triton model repository ``repository``;
    returns the model folder. Other models in ``repository`` are left alone."""
    from mesc import __version__
    from mesc.package import Package
    from mesc.package.outputs import check_dir_output, refuse_overlap
    from mesc.package.staging import staging_dir
    from mesc.serving.server import model_name

    opts = options or RepositoryOptions()
    if opts.instances < 1:
        raise MescError("--instances must be at least 1")
    gpu_of(opts.device)  # a device Triton cannot place is refused before any work
    name = model_name(package, opts.name)
    repo = Path(repository)
    model_dir = repo / name
    refuse_overlap([("--model-repository", repo)], [("PACKAGE", package)])
    pkg = Package.load(package)
    shape = model_shape(pkg, opts)
    check_dir_output(model_dir, "triton-model", force=opts.force, option="--model-repository",
                     inputs=[("PACKAGE", package)])
    with staging_dir(model_dir, force=opts.force) as tmp:
        version_dir = tmp / VERSION
        version_dir.mkdir()
        shutil.copytree(pkg.root, version_dir / "package", ignore=_ignore_hidden, symlinks=False)
        Package.load(version_dir / "package")  # the copy is whole: every checksum holds
        (version_dir / "model.py").write_text(MODEL_PY.format(written_by=WRITTEN_BY, version=__version__))
        (tmp / "config.pbtxt").write_text(config_pbtxt(name, shape, opts))
        (tmp / "README.md").write_text(readme(name, repo.resolve(), shape, opts, __version__))
        marker = {"written_by": WRITTEN_BY, "mesc_version": __version__, "model": name,
                  "package": str(Path(package).resolve())}
        (tmp / MARKER).write_text(json.dumps(marker, indent=2) + "\n")
    batching = (f"static batch {shape.static_batch}: max_batch_size 0" if shape.static_batch
                else f"max_batch_size {shape.max_batch}, dynamic batching")
    echo(f"mesc serve: wrote model '{name}' to {model_dir} ({batching}; {opts.instances} instance(s) on "
         f"{opts.device}). Start it with tritonserver --model-repository={repo}; see {model_dir / 'README.md'}")
    return model_dir
