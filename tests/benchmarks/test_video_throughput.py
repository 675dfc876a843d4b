"""benchmarks/video_throughput.py on a short synthetic video: every frame segmented in both
decode modes, at the package's size and resized from a larger one."""

import pytest

pytest.importorskip("av")


def test_measure_counts_every_frame_in_both_modes(toy_package, tmp_path):
    from mesc.benchmarks.video_throughput import measure

    res = measure(toy_package, seconds=1.0, fps=10, sizes=[(32, 64), (48, 96)], work=tmp_path, rounds=2)
    assert [(r["video"], r["decode_thread"]) for r in res["runs"]] == [
        ("32x64", True), ("32x64", False), ("32x64", False), ("32x64", True),
        ("48x96", True), ("48x96", False), ("48x96", False), ("48x96", True)]
    assert all(r["frames"] == 10 and r["frames_per_s"] > 0 for r in res["runs"])
    assert [r["resize"] for r in res["summary"]] == [False, False, True, True]
    for s in res["summary"]:
        assert sum(s["exit_shares"].values()) == pytest.approx(1.0) and len(s["frames_per_s"]) == 2
