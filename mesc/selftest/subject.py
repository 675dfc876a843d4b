"""What the self-test runs: the package (a user's, or the demo exported here), its images, and
the pipeline of the backend under test."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

from mesc.errors import MissingDependencyError


def export_demo(workdir: Path, say):
    """The embedded demo model exported into ``workdir``; needs torch (the ``export`` extra)."""
    if importlib.util.find_spec("torch") is None:
        raise MissingDependencyError(
            "mesc selftest without a PACKAGE exports the demo model, which needs torch: pass a package "
            "exported elsewhere (mesc selftest PACKAGE), or install the exporter: pip install 'mesc[export]'")
    from mesc.exporters.export import export

    say("exporting the demo model")
    return export(None, workdir / "demo")


def scenes(shape, count: int, seed: int) -> list[np.ndarray]:
    """The demo's synthetic scenes from easy to hard, at the package's H x W."""
    from mesc.datasets.synthetic import render_scene

    rng = np.random.default_rng(seed)
    return [render_scene(rng, size=(int(shape[2]), int(shape[3])), d=float(d))[0]
            for d in np.linspace(0.0, 1.0, count)]


def random_images(shape, count: int, seed: int) -> list[np.ndarray]:
    """Smooth random colour fields with noise (closer to images than white noise: the exits'
    confidences spread instead of all images going to the final exit)."""
    rng = np.random.default_rng(seed)
    h, w = int(shape[2]), int(shape[3])
    out = []
    for _ in range(count):
        cells = rng.uniform(0, 255, (max(h // 8, 1), max(w // 8, 1), 3))
        field = np.kron(cells, np.ones((8, 8, 1)))[:h, :w]
        field = np.pad(field, ((0, h - field.shape[0]), (0, w - field.shape[1]), (0, 0)), mode="edge")
        out.append(np.clip(field + rng.normal(0, 8, (h, w, 3)), 0, 255).astype(np.uint8))
    return out


def write_images(images, folder: Path) -> Path:
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    for i, img in enumerate(images):
        Image.fromarray(img).save(folder / f"{i:03d}.png")
    return folder


def ensure_engines(pkg, target: str, precision: str, calib_data, say) -> dict | None:
    """The TensorRT engines for target/precision: the package's own, else built now (returns the
    new manifest entry; None when they were there already)."""
    if precision in pkg.engines.get(target, {}):
        return None
    from mesc.engines.build import build

    say(f"building {target} {precision} engines into {pkg.root}")
    return build(pkg.root, target, precision, calib_data=calib_data, progress=say)


def ensure_prepared(pkg, precision: str, calib_data, say):
    """Prepare the demo's graphs of ``precision`` (the package is the self-test's own)."""
    if precision == "fp32" or precision in pkg.precisions:
        return pkg
    from mesc.calibration.precision import prepare
    from mesc.package import Package

    say(f"preparing {precision} graphs")
    prepare(pkg.root, (precision,), calib_data=calib_data, progress=say)
    return Package.load(pkg.root)


def open_tested(pkg, backend: str, device, target: str, precision: str):
    """The pipeline under test: the package's engines (TensorRT) or its prepared graphs (ONNX
    Runtime) at ``precision``."""
    from mesc.runtime import load

    if backend == "tensorrt":
        return load(pkg.root, backend="tensorrt", device=device, target=target, precision=precision)
    return load(pkg.root, backend="onnxruntime", device=device, precision=None if precision == "fp32" else precision)
