"""``mesc calibrate --split`` reads one split of a data set with splits."""

from mesc.calibration.exits.memo import calibration_pairs
import layout_fixtures as fixtures


def test_calibration_pairs_of_one_split(tmp_path):
    fixtures.cityscapes(tmp_path)
    pairs = calibration_pairs(tmp_path, split="train")
    assert [p.parent.name for p, _ in pairs] == ["aachen", "bonn"]
    assert len(calibration_pairs(tmp_path, limit=1, split="train")) == 1
