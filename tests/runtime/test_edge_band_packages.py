"""The edge band a package compiled: new packages say which ("band"), packages without the key
are older than it and keep the wide band in the graph, on the host and in calibration."""

import json

import numpy as np
import pytest

# its packages are exported here from toy nets (the Python 3.8 stage has no torch)
torch = pytest.importorskip("torch")

import mesc
from mesc.calibration.exits.memo import image_stats
from mesc.package.describe import format_package
from mesc.errors import MescError
from mesc.exporters.export import ExportOptions, export
from mesc.package import Package
from mesc.policy import mess_confidence
from toys import SHAPE, three_exits

TH_PIX = 0.5


def _export(out, policy="top1"):
    # small strides keep the band narrower than the 32x64 image; the th_pix the graph reports at
    return export(three_exits(), out, options=ExportOptions(
        input_shape=SHAPE, strides=[2, 4, 4], dynamic_batch=True, policy=policy, th_pix=TH_PIX, verify=False)).root


def _export_as_before_the_key(out, monkeypatch, policy="top1"):
    """A package as mesc wrote it before the key existed: graphs with the wide band, no "band"
    in the manifest (which is not checksummed)."""
    from mesc.exporters.policy import mess as policy_graph

    append = policy_graph.append_policy
    monkeypatch.setattr(policy_graph, "append_policy", lambda *a, **kw: append(*a, **{**kw, "band": "wide"}))
    root = _export(out, policy)
    m = json.loads((root / "mesc.json").read_text())
    for ex in m["exits"]:
        del ex["policy"]["band"]
    (root / "mesc.json").write_text(json.dumps(m))
    return root


@pytest.fixture(scope="module")
def images():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((8, *SHAPE[1:])).astype(np.float32)
    return x * np.geomspace(1.0, 30.0, 8).astype(np.float32)[:, None, None, None]


def _exit_logits(images):
    with torch.no_grad():
        return [o.numpy() for o in three_exits()(torch.from_numpy(images))]


def _in_graph_confidences(root, images):
    with mesc.load(root) as pipe:
        steps = list(pipe.anytime(images, all_exits=True))
    return [np.array([r.confidences[ex] for r in step]) for ex, step in zip(pipe.exit_names, steps)]


def _references(images, pkg):
    """Per exit: c_img of the paper's and the wide band; the test needs them to differ."""
    refs = []
    for ex, logits in zip(pkg.exits, _exit_logits(images)):
        refs.append({band: mess_confidence(logits, TH_PIX, stride=ex.policy["stride"], band=band)
                     for band in ("paper", "wide")})
    assert any((r["paper"] != r["wide"]).any() for r in refs), "no image tells the bands apart"
    return refs


def test_export_writes_the_band_and_compiles_it(tmp_path, images):
    root = _export(tmp_path / "pkg")
    pkg = Package.load(root)
    assert [ex.policy["band"] for ex in pkg.exits] == ["paper"] * 3
    tol = 1.5 / (SHAPE[2] * SHAPE[3])  # float32 confidences may sit a hair beside th_pix
    for got, ref in zip(_in_graph_confidences(root, images), _references(images, pkg)):
        np.testing.assert_allclose(got, ref["paper"], atol=tol)
    # compiled into the graph: changing it needs a re-export
    with pytest.raises(MescError, match="band is compiled into the exit's graph; re-export"):
        pkg.set_policy("exit0", band="wide")


def test_the_wide_band_is_not_exported_and_says_why(tmp_path):
    with pytest.raises(MescError, match=r"--edge-band must be one of \('paper',\), got 'wide': it gave no lower "
                                        r"held-out latency"):
        export(three_exits(), tmp_path / "pkg", options=ExportOptions(input_shape=SHAPE, edge_band="wide"))
    assert not (tmp_path / "pkg").exists()


def test_a_package_without_the_key_keeps_the_wide_band(tmp_path, images, monkeypatch):
    root = _export_as_before_the_key(tmp_path / "old", monkeypatch)
    pkg = Package.load(root)
    assert all("band" not in ex.policy for ex in pkg.exits)
    rows = [line.split() for line in format_package(pkg).splitlines()]
    header = next(row for row in rows if row[:2] == ["exit", "on"])
    bands = [row[header.index("band")] for row in rows if row and row[0] in [ex.name for ex in pkg.exits]]
    assert bands == ["wide"] * 3, rows  # mesc inspect's band column
    tol = 1.5 / (SHAPE[2] * SHAPE[3])
    refs = _references(images, pkg)
    for got, ref in zip(_in_graph_confidences(root, images), refs):
        np.testing.assert_allclose(got, ref["wide"], atol=tol)
    # calibration scores it with the band its graph has
    logits = _exit_logits(images)
    for ex, lg, ref in zip(pkg.exits, logits, refs):
        got = [image_stats(lg[i], lg[i].argmax(0), [TH_PIX], ex.policy)["mess"][0] for i in range(len(lg))]
        np.testing.assert_array_equal(got, ref["wide"])


def test_a_host_policy_package_without_the_key_decides_with_the_wide_band(tmp_path, images, monkeypatch):
    root = _export_as_before_the_key(tmp_path / "old-host", monkeypatch, policy=None)
    pkg = Package.load(root)
    refs = _references(images, pkg)
    with mesc.load(root) as pipe:
        steps = list(pipe.anytime(images, all_exits=True))
    for ex, step, ref in zip(pipe.exit_names, steps, refs):
        np.testing.assert_allclose([r.confidences[ex] for r in step], ref["wide"], atol=1e-12)
