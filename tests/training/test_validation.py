"""Per-exit mIoU of a torch model on a labelled folder, and the difficulty table."""

from mesc import training
from tiny_nets import tiny_model


def test_evaluate_miou_and_difficulty_table(scenes):
    result = training.evaluate(tiny_model(), scenes)
    assert len(result["miou"]) == 3 and all(0.0 <= m <= 1.0 for m in result["miou"])
    assert result["pixel_acc"].shape == (3, 12) and len(result["difficulty"]) == 12
    table = training.difficulty_table(result, bins=(0.0, 0.2, 0.4))
    assert "exit2" in table and len(table.splitlines()) == 4
