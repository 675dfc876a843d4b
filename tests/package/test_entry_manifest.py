"""The manifest's entry segment (input.entry): what load accepts, and one message for each way
a hand-edited or damaged manifest gets it wrong."""

import json
import shutil

import pytest

from mesc.package import Package
from test_package import refusal


@pytest.fixture(scope="module")
def pkg_dir(tmp_path_factory):
    from exported import export_toy

    return export_toy("skipnet", tmp_path_factory.mktemp("entry") / "toy", policy=None, verify=False)


def test_the_default_export_records_its_entry(pkg_dir):
    pkg = Package.load(pkg_dir)
    assert pkg.input.entry is not None and pkg.input.entry.segment == "entry" and pkg.input.entry.layout == "NHWC"
    assert pkg.input.normalized_on == "device"
    assert pkg.entry is pkg.segments[0] and pkg.entry.kind == "entry"
    # uint8 images run it first on every exit's path
    for ex in pkg.exits:
        assert pkg.segments_until(ex.name)[0] is pkg.entry


def _behind(m):
    """Move the entry behind the first chunk."""
    m["segments"][0], m["segments"][1] = m["segments"][1], m["segments"][0]


def _second_entry(m):
    extra = json.loads(json.dumps(m["segments"][0]))
    extra["name"] = "entry2"
    m["segments"].insert(1, extra)


@pytest.mark.parametrize("edit,message", [
    (lambda m: m["input"].pop("entry"), "segment 'entry': an entry segment, but the input records no entry"),
    (lambda m: m["input"]["entry"].update(layout="NCHW"), "input entry: layout must be 'NHWC'"),
    (lambda m: m["input"]["entry"].pop("input"), "input entry: input must be a non-empty string"),
    (lambda m: m["input"]["entry"].update(input="image"), "input entry: input must differ from the float input"),
    (lambda m: m["input"].update(entry=["entry"]), "input entry: entry must be an object"),
    (lambda m: m["input"]["entry"].update(segment="nope"), "input entry: segment 'nope' is not in 'segments'"),
    (lambda m: m["input"]["entry"].update(segment="chunk0"), "segment 'chunk0': the input's entry is a chunk"),
    (_behind, "segment 'entry': the entry segment must be the first segment"),
    (_second_entry, "segment 'entry2': a second entry segment"),
    (lambda m: m["segments"][0].update(exit="exit0"), "segment 'entry': an entry segment belongs to no exit"),
    (lambda m: m["segments"][0]["inputs"][0].update(shape=[1, 3, 32, 64]),
     "segment 'entry': input 'image_uint8' is uint8[1, 3, 32, 64] but the uint8 image gives uint8[1, 32, 64, 3]"),
    (lambda m: m["segments"][0]["inputs"][0].update(dtype="float32"),
     "input 'image_uint8' is float32[1, 32, 64, 3] but the uint8 image gives uint8"),
    (lambda m: m["segments"][0]["outputs"][0].update(dtype="float16"),
     "segment 'entry': output 'image' is float16[1, 3, 32, 64] but the input is float32[1, 3, 32, 64]"),
    (lambda m: m["segments"][0]["outputs"][0].update(name="other"),
     "segment 'entry': an entry segment gives the float input 'image' only"),
    (lambda m: m["segments"][1]["inputs"].append({"name": "image_uint8", "shape": [1, 32, 64, 3], "dtype": "uint8"}),
     "segment 'chunk0': input 'image_uint8' is the uint8 image, which only the entry segment reads"),
])
def test_inconsistent_entry_is_refused(pkg_dir, tmp_path, edit, message):
    assert message in refusal(pkg_dir, tmp_path, edit)


def test_a_package_without_entry_loads_as_before(pkg_dir, tmp_path):
    """The format every package had before entries: no input.entry, no entry segment."""
    d = shutil.copytree(pkg_dir, tmp_path / "old")
    m = json.loads((d / "mesc.json").read_text())
    m["input"].pop("entry")
    gone = m["segments"].pop(0)
    m["files"].pop(gone["file"])
    (d / "mesc.json").write_text(json.dumps(m))
    pkg = Package.load(d)
    assert pkg.entry is None and pkg.input.entry is None and pkg.input.normalized_on == "host"
    assert pkg.segments[0].name == "chunk0"
