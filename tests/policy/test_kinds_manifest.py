"""The manifest's policy kinds: what each kind must record, refused with the key named; MESS
packages (no "kind") load as before."""

import json
import re
import shutil

import pytest

from mesc.errors import PackageError
from mesc.package import Package


@pytest.fixture(scope="module")
def in_graph_pkg(tmp_path_factory):
    from exported import export_toy

    return export_toy("skipnet", tmp_path_factory.mktemp("kinds") / "pkg", policy="top1", verify=False)


def edited(src, tmp_path, edit):
    d = shutil.copytree(src, tmp_path / "copy")
    m = json.loads((d / "mesc.json").read_text())
    edit(m)
    (d / "mesc.json").write_text(json.dumps(m))
    return d


def as_kind(kind, **thresholds):
    """Every exit running ``kind`` in the graph with ``thresholds`` (the heads are not changed:
    the manifest checks come first)."""
    def edit(m):
        for ex in m["exits"]:
            ex["policy"] = {k: v for k, v in ex["policy"].items() if k not in ("th_pix", "th_img")}
            ex["policy"].update(kind=kind, **thresholds)
            ex["th_pix_input"] = None
    return edit


@pytest.mark.parametrize("edit,message", [
    (lambda m: m["exits"][0]["policy"].update(kind="median"), "exit 'exit0' policy: kind must be one of"),
    (as_kind("fft", lo=0.1), "exit 'exit0' policy: missing 'hi' (the fft policy's threshold)"),
    (as_kind("learned", th_img=0.5), "the learned policy runs in the exit's graph, but the exit has none"),
    (as_kind("fft", lo=0.5, hi=0.1), "lo must not exceed hi"),
    (as_kind("fft", lo="0", hi=1.0), "lo (the FFT policy's score range) must be a finite number"),
    (as_kind("mean_entropy"), "missing 'th_img' (the mean_entropy policy's threshold)"),
    (lambda m: m["exits"][0]["policy"].update(kind="mean_top1"),
     "th_pix_input must be null: the mean_top1 policy in the graph reads no pixel threshold"),
    (lambda m: [ex["policy"].pop("th_pix") for ex in m["exits"]], "exit 'exit0' policy: missing 'th_pix'"),
])
def test_each_kind_records_its_thresholds(toy_package, in_graph_pkg, tmp_path, edit, message):
    src = in_graph_pkg if "th_pix_input" in message else toy_package  # heads without th_pix: the host's
    with pytest.raises(PackageError, match=re.escape(message)):
        Package.load(edited(src, tmp_path, edit))


def test_host_kinds_need_no_graph_and_old_packages_load_unchanged(toy_package, in_graph_pkg, tmp_path):
    for src in (toy_package, in_graph_pkg):
        m = json.loads((src / "mesc.json").read_text())
        assert not any("kind" in ex["policy"] for ex in m["exits"])  # exports write MESS as always
        assert Package.load(src).manifest == m
    d = edited(toy_package, tmp_path, as_kind("fft", lo=0.0, hi=2.0))
    assert {ex.policy["kind"] for ex in Package.load(d).exits} == {"fft"}


def test_changing_the_compiled_kind_by_hand_points_to_calibrate(in_graph_pkg):
    pkg = Package.load(in_graph_pkg)
    with pytest.raises(Exception, match=r"kind is compiled into the exit's graph.*calibrate --policy KIND --write"):
        pkg.set_policy("exit0", kind="mean_top1")
