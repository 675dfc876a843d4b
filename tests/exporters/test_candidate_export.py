"""Candidate exit heads (several heads per exit point): export, manifest, runtime, inspect."""

import numpy as np
import pytest
import torch
from click.testing import CliRunner

import mesc
from mesc.cli import cli
from mesc.errors import ExportError
from mesc.exporters.export import ExportOptions, export
from mesc.exporters.verify import flatten_exits
from mesc.package import Package
from toys import SHAPE, CandidateSkipNet, candidate_skipnet

NAMES = ["exit0c0", "exit0c1", "exit0c2", "exit1c0", "exit1c1", "exit2"]
HEADS = ["head0c0", "head0c1", "head0c2", "head1c0", "head1c1", "head2"]


def _export(out, **kw):
    # small strides keep the edge band narrower than the 32x64 image
    kw.setdefault("strides", [2] * len(kw.get("exits") or NAMES))
    return export(candidate_skipnet(), out, options=ExportOptions(input_shape=SHAPE, **kw))


@pytest.fixture(scope="module")
def pkg_dir(tmp_path_factory):
    return _export(tmp_path_factory.mktemp("cands") / "pkg", dynamic_batch=True).root


@pytest.fixture(scope="module")
def images():
    """Normalised images from timid to bold: larger inputs make every exit more confident."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal((8, *SHAPE[1:])).astype(np.float32)
    return x * np.geomspace(1.0, 30.0, 8).astype(np.float32)[:, None, None, None]


def test_every_candidate_is_its_own_head_on_the_shared_backbone_tensor(pkg_dir):
    pkg = Package.load(pkg_dir)
    assert [s.name for s in pkg.segments] == ["entry", "chunk0", *HEADS[:3], "chunk1", *HEADS[3:]]
    assert [s.kind for s in pkg.segments] == ["entry", "chunk", "head", "head", "head", "chunk", "head", "head", "head"]
    live = {s.name: [t.name for t in s.inputs if not t.name.endswith("_th_pix")] for s in pkg.segments}
    chunk0_out = [t.name for t in pkg.segment("chunk0").outputs]
    chunk1_out = [t.name for t in pkg.segment("chunk1").outputs]
    assert live["head0c0"] == live["head0c1"] == live["head0c2"] == chunk0_out
    assert live["head1c0"] == live["head1c1"] == chunk1_out
    # a deeper candidate costs more: the FLOPs follow the heads' extra blocks
    flops = {s.name: s.flops for s in pkg.segments}
    assert flops["head0c0"] < flops["head0c1"] < flops["head0c2"]
    assert flops["head1c0"] < flops["head1c1"]


def test_manifest_names_points_candidates_configs_and_enables_candidate_zero(pkg_dir):
    pkg = Package.load(pkg_dir)
    assert [e.name for e in pkg.exits] == NAMES
    assert [e.segment for e in pkg.exits] == HEADS
    assert [e.point for e in pkg.exits] == [0, 0, 0, 1, 1, 2]
    assert [e.candidate for e in pkg.exits] == [0, 1, 2, 0, 1, 0]
    assert [e.enabled for e in pkg.exits] == [True, False, False, True, False, True]
    assert [e.index for e in pkg.exits] == list(range(6))
    assert [e.config for e in pkg.exits] == [c.to_dict() for c in CandidateSkipNet().exit_configs]
    assert set(pkg.manifest["verification"]) == set(NAMES)


def test_every_candidates_logits_match_pytorch(pkg_dir, images):
    net = candidate_skipnet()
    with torch.no_grad():
        want = [t.numpy() for t in flatten_exits(net(torch.from_numpy(images)))]
    with mesc.load(pkg_dir) as pipe:
        for name, ref in zip(NAMES, want):
            got = np.stack([r.logits for r in pipe(images, exit=name, logits=True)])
            assert got.shape == ref.shape
            np.testing.assert_allclose(got, ref, atol=1e-4 * np.abs(ref).max())


def test_an_exit_by_name_runs_its_chunk_path_and_no_other_candidate(pkg_dir, images):
    with mesc.load(pkg_dir) as pipe:
        for name, path in (("exit0c2", ["chunk0", "head0c2"]), ("exit1c1", ["chunk0", "chunk1", "head1c1"]),
                           ("exit2", ["chunk0", "chunk1", "head2"])):
            res = pipe(images[:2], exit=name)
            assert {r.exit for r in res} == {name}
            assert list(res[0].timings["segments"]) == path
            assert list(res[0].confidences) == [name]


def _reference_exits(pipe, images, enabled, th_img):
    """Where each image leaves by the MESS rule, from every exit's own confidences: the first
    enabled exit whose confidence reaches th_img, else the final exit."""
    conf = {}
    for step in pipe.anytime(images, all_exits=True):
        conf[step[0].exit] = np.array([r.confidences[step[0].exit] for r in step])
    out = []
    for i in range(len(images)):
        out.append(next((k for k in enabled[:-1] if conf[k][i] >= th_img), enabled[-1]))
    return out


def test_input_dependent_runs_enabled_exits_and_skips_disabled_candidates(pkg_dir, images):
    with mesc.load(pkg_dir) as pipe:
        for k in NAMES:
            pipe.set_thresholds(k, th_pix=0.5, th_img=0.5)
        res = pipe(images)
        ran = {n for r in res for n in r.timings["segments"]}
        assert not ran & {"head0c1", "head0c2", "head1c1"}
        assert all(set(r.confidences) <= {"exit0c0", "exit1c0", "exit2"} for r in res)
        assert [r.exit for r in res] == _reference_exits(pipe, images, ["exit0c0", "exit1c0", "exit2"], 0.5)
        assert len({r.exit for r in res}) > 1  # the images spread over the exits: the rule is exercised
        # another candidate chosen at point 0: its head runs instead of candidate 0's
        pipe.set_enabled("exit0c0", False)
        pipe.set_enabled("exit0c2", True)
        res = pipe(images)
        ran = {n for r in res for n in r.timings["segments"]}
        assert "head0c2" in ran and not ran & {"head0c0", "head0c1", "head1c1"}
        assert [r.exit for r in res] == _reference_exits(pipe, images, ["exit0c2", "exit1c0", "exit2"], 0.5)


def test_segment_timing_covers_every_candidate_head(pkg_dir, images, tmp_path):
    import shutil

    copy = tmp_path / "pkg"
    shutil.copytree(pkg_dir, copy)
    res = CliRunner().invoke(cli, ["bench", str(copy), "--warmup", "1", "--iters", "2", "--baseline", "none",
                                   "--record"], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    latency = Package.load(copy).manifest["latency"]
    (recorded,) = latency.values()
    assert set(recorded) == {s.name for s in Package.load(copy).segments}
    assert all(ms > 0 for ms in recorded.values())


def test_inspect_groups_exits_by_point_with_config_and_enabled(pkg_dir):
    res = CliRunner().invoke(cli, ["inspect", str(pkg_dir)], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    table = res.output.split("exits:")[1].strip().splitlines()
    assert table[0].split()[:4] == ["point", "exit", "on", "config"]
    rows = [r.split() for r in table[1:]]
    assert [r[0] for r in rows] == ["0", "exit0c1", "exit0c2", "1", "exit1c1", "2"]  # the point on its first row
    assert rows[0][1:3] == ["exit0c0", "yes"] and rows[1][1] == "no"
    assert "2 blocks" in table[3] and "0 blocks" in table[1]


def test_fx_capture_gives_the_same_segments(tmp_path):
    pkg = _export(tmp_path / "fx", capture="fx")
    assert [s.name for s in pkg.segments] == ["entry", "chunk0", *HEADS[:3], "chunk1", *HEADS[3:]]


def test_exits_subset_keeps_candidate_names_and_enables_the_first_kept(tmp_path):
    pkg = _export(tmp_path / "sub", exits=[1, 2, 4, 5])
    assert [e.name for e in pkg.exits] == ["exit0c1", "exit0c2", "exit1c1", "exit2"]
    assert [e.enabled for e in pkg.exits] == [True, False, True, True]
    assert [s.name for s in pkg.segments] == ["entry", "chunk0", "head0c1", "head0c2", "chunk1", "head1c1", "head2"]


class _FinalCandidates(CandidateSkipNet):
    def forward(self, x):
        outs = super().forward(x)
        return [outs[0], outs[1][0], [outs[2], outs[2] * 2]]


class _ShortConfigs(CandidateSkipNet):
    def __init__(self):
        super().__init__()
        self.exit_configs = self.exit_configs[:3]


@pytest.mark.parametrize("model, kw, message", [
    (_FinalCandidates(), {}, r"2 candidate heads at its final exit point \(exit2\); the final point must be one"),
    (CandidateSkipNet(), {"exits": [1, 2]}, r"--exits keeps \['exit0c1', 'exit0c2'\], candidate heads of one exit "
                                            r"point, as the deepest exits"),
    (_ShortConfigs(), {}, r"exit_configs has 3 entries but its forward returns 6 exits"),
])
def test_bad_candidate_models_are_refused_before_writing(tmp_path, model, kw, message):
    with pytest.raises(ExportError, match=message):
        export(model.eval(), tmp_path / "pkg", options=ExportOptions(input_shape=SHAPE, **kw))
    assert list(tmp_path.iterdir()) == []


def test_mesc_run_takes_a_candidate_by_name_and_the_policy_skips_disabled_ones(pkg_dir, tmp_path):
    import csv

    from toys import calibration_images

    images = tmp_path / "images"
    images.mkdir()
    calibration_images(images, 3)
    res = CliRunner().invoke(cli, ["run", str(pkg_dir), str(images), "-o", str(tmp_path / "by_name"),
                                   "--exit", "exit1c1"], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    rows = list(csv.DictReader(open(tmp_path / "by_name" / "results.csv")))
    assert [r["exit"] for r in rows] == ["exit1c1"] * 3
    res = CliRunner().invoke(cli, ["run", str(pkg_dir), str(images), "-o", str(tmp_path / "policy")],
                             catch_exceptions=False)
    assert res.exit_code == 0, res.output
    rows = list(csv.DictReader(open(tmp_path / "policy" / "results.csv")))
    assert {r["exit"] for r in rows} <= {"exit0c0", "exit1c0", "exit2"}
    assert all(r[f"confidence_{k}"] == "" for r in rows for k in ("exit0c1", "exit0c2", "exit1c1"))


def test_a_model_without_candidates_writes_the_manifest_as_before(tmp_path):
    from toys import three_exits

    pkg = export(three_exits(), tmp_path / "plain", options=ExportOptions(input_shape=SHAPE))
    assert [e.name for e in pkg.exits] == ["exit0", "exit1", "exit2"]
    assert [s.name for s in pkg.segments] == ["entry", "chunk0", "head0", "chunk1", "head1", "head2"]
    assert not any({"point", "candidate", "enabled", "config"} & set(e) for e in pkg.manifest["exits"])
    assert [ex.point for ex in pkg.exits] == [0, 1, 2]


def test_a_manifest_with_candidates_out_of_point_order_is_refused(pkg_dir, tmp_path):
    import json
    import shutil

    from mesc.errors import PackageError

    copy = tmp_path / "pkg"
    shutil.copytree(pkg_dir, copy)
    m = json.loads((copy / "mesc.json").read_text())
    m["exits"][3]["point"] = 0
    m["exits"][2]["point"] = 1
    (copy / "mesc.json").write_text(json.dumps(m))
    with pytest.raises(PackageError, match="exit 'exit1c0': exits must be in point order"):
        Package.load(copy)


def test_policy_at_native_gives_every_candidate_its_own_tail(tmp_path, images):
    pkg = _export(tmp_path / "native", policy_at="native", dynamic_batch=True)
    tails = [s.name for s in pkg.segments if s.kind == "tail"]
    assert tails == ["tail0c0", "tail0c1", "tail0c2", "tail1c0", "tail1c1", "tail2"]
    assert [e.tail for e in pkg.exits] == tails
    with mesc.load(pkg.root) as pipe:
        res = pipe(images[:2], exit="exit0c1")
        assert list(res[0].timings["segments"]) == ["chunk0", "head0c1", "tail0c1"]
