"""``mesc eval``: every exit and the package's policy scored at the masks' resolution (2x the
package input here), against a hand computation with torch's bilinear resize; calibration's
memo scores the same way."""

import json
import shutil

import numpy as np
import pytest

from mesc.evaluation.metrics import confusion_matrix, counts_from_confusion, miou


@pytest.fixture(scope="module")
def toy(policy_package, tmp_path_factory):
    """The shared toy package (input 32 x 64, 6 classes) and 8 scenes at 64 x 128 (masks too)."""
    from mesc.datasets.synthetic import generate

    return policy_package, generate(tmp_path_factory.mktemp("eval_data") / "data", 8, seed=5, size=(64, 128))


def _items(data):
    from mesc.datasets import read_folder
    from mesc.datasets.images import load_pair
    from PIL import Image

    out = []
    for img, mask in read_folder(data, require_masks=True):
        image, m = load_pair(img, mask)
        out.append((np.asarray(Image.fromarray(image).resize((64, 32), Image.BILINEAR)), m))
    return out


def _by_hand(logits, mask):
    """torch's bilinear resize to the mask's size, argmax, confusion against the mask."""
    import torch

    up = torch.nn.functional.interpolate(torch.from_numpy(np.asarray(logits, np.float32))[None], size=mask.shape,
                                         mode="bilinear", align_corners=False)[0].numpy()
    return confusion_matrix(up.argmax(0), mask, 6)


def _row(cm):
    inter, union = counts_from_confusion(cm)
    return float(miou(inter, union)), np.trace(cm) / cm.sum()


def test_eval_scores_at_the_mask_resolution(toy, tmp_path):
    pytest.importorskip("torch")  # the reference resize is torch's bilinear interpolation
    from mesc.evaluation.evaluate import evaluate_package, format_table
    from mesc.package import Package
    from mesc.runtime import load

    pkg_dir, data = toy
    root = tmp_path / "pkg"
    shutil.copytree(pkg_dir, root)
    items = _items(data)
    pipe = load(root, backend="onnxruntime")
    # exit0 takes about half the images: the policy row mixes exits (the untrained toy's top-1
    # confidences sit near 1/6, hence th_pix 0.2)
    pipe.set_thresholds("exit0", th_pix=0.2)
    conf0 = [r.confidences["exit0"] for r in next(iter(pipe.anytime([im for im, _ in items])))]
    th = float(np.median(conf0))
    pkg = Package.load(root)
    pkg.set_policy("exit0", th_pix=0.2, th_img=th)
    pkg.set_policy("exit1", th_img=1.0)
    pipe.set_thresholds("exit0", th_img=th)
    pipe.set_thresholds("exit1", th_img=1.0)

    ev = evaluate_package(pkg, data, resize=True, batch=3, json=tmp_path / "eval.json")
    rows = ev.rows()
    assert [r["name"] for r in rows] == ["exit0", "exit1", "exit2", "policy"]
    assert [r["mode"] for r in rows] == ["budgeted"] * 3 + ["input-dependent"]
    for e, row in enumerate(rows[:3]):  # budgeted: every image at exit e
        cm = sum(_by_hand(r.logits, m) for r, (_, m) in zip(pipe([im for im, _ in items], exit=e, logits=True), items))
        assert np.array_equal(ev.budgeted[e], cm)
        assert row["miou"] == pytest.approx(_row(cm)[0]) and row["pixel_accuracy"] == pytest.approx(_row(cm)[1])
        assert row["pixels"] == int((np.stack([m for _, m in items]) != 255).sum())
    # input-dependent: the exits the runtime picks, scored at the mask's size
    results = pipe([im for im, _ in items], logits=True)
    taken = {e: sum(r.exit == e for r in results) for e in pipe.exit_names}
    assert ev.policy_exits == taken and 0 < taken["exit0"] < len(items) and taken["exit1"] == 0
    cm = sum(_by_hand(r.logits, m) for r, (_, m) in zip(results, items))
    assert np.array_equal(ev.policy, cm)
    inter, union = counts_from_confusion(cm)
    assert rows[3]["class_iou"] == [pytest.approx(i / u) if u else None for i, u in zip(inter, union)]

    table = format_table(ev)
    assert "policy" in table and "IoU per class" in table and f"exit0 {taken['exit0']}" in table
    assert len(table.splitlines()) == 3 + 4 + 4 + 6  # heading, rows, exits taken and class heading, classes
    assert table.splitlines()[-1].startswith("clutter")  # class names from the data folder
    report = json.loads((tmp_path / "eval.json").read_text())
    assert report["images"] == 8 and [r["miou"] for r in report["rows"]] == [r["miou"] for r in rows]
    assert report["thresholds"]["exit0"]["th_img"] == th and report["policy_exits"]["exit0"]["images"] == taken["exit0"]

    # calibration's memo scores the same way: the same per-exit mIoU
    from mesc.calibration.exits.memo import evaluate

    memo = evaluate(root, data, th_pix_grid=[0.5], resize=True)
    assert [memo.miou(e) for e in range(3)] == pytest.approx([r["miou"] for r in rows[:3]])


def test_eval_cli_table_json_and_force(toy, tmp_path):
    from click.testing import CliRunner

    from mesc.cli import cli

    pkg_dir, data = toy
    out = tmp_path / "eval.json"
    res = CliRunner().invoke(cli, ["eval", str(pkg_dir), "--data", str(data), "--resize", "--json", str(out)])
    assert res.exit_code == 0, res.output
    assert "input-dependent" in res.output and json.loads(out.read_text())["rows"][3]["name"] == "policy"
    res = CliRunner().invoke(cli, ["eval", str(pkg_dir), "--data", str(data), "--resize", "--json", str(out)])
    assert res.exit_code == 2 and "already exists; pass --force" in res.output
    res = CliRunner().invoke(cli, ["eval", str(pkg_dir), "--data", str(data), "--json", str(out), "--force"])
    assert res.exit_code == 2 and "pass --resize" in res.output
    res = CliRunner().invoke(cli, ["eval", str(pkg_dir), "--data", str(data), "--json", str(data / "x.json")])
    assert res.exit_code == 2 and "--data" in res.output


def test_policy_choice_follows_the_runtime_rule():
    from mesc.evaluation.evaluate import policy_choice

    from mesc.package.schema import Exit

    def exit_(k, name, th_img, enabled=True):
        return Exit(name, k, f"head{k}", f"{name}_logits", 2, 1, {"th_img": th_img}, k, enabled=enabled)

    class Pkg:
        exits = (exit_(0, "a", 0.5), exit_(1, "b", 0.7, enabled=False), exit_(2, "c", 0.9))

    assert policy_choice(Pkg, {"a": 0.5, "b": 0.9}) == 0      # >= th_img leaves
    assert policy_choice(Pkg, {"a": 0.4, "b": 0.9}) == 2      # b is disabled: never taken
    assert policy_choice(Pkg, {"a": 0.1, "b": 0.1, "c": 0.0}) == 2


def test_class_names_come_from_the_published_layout(toy, tmp_path, monkeypatch):
    """A data set in a published layout names its classes itself (no classes.txt there)."""
    from mesc.evaluation.evaluate import evaluate_package
    from mesc.datasets import read_folder
    from mesc.datasets import cityscapes

    pkg, data = toy
    root = tmp_path / "cs"
    for k, (img, mask) in enumerate(read_folder(data, require_masks=True)[:2]):
        for sub, name, src in (("leftImg8bit", "leftImg8bit", img), ("gtFine", "gtFine_labelTrainIds", mask)):
            (root / sub / "val" / "x").mkdir(parents=True, exist_ok=True)
            shutil.copy(src, root / sub / "val" / "x" / f"x_{k}_{name}.png")
    names = ["c0", "c1", "c2", "c3", "c4", "c5"]
    monkeypatch.setattr(cityscapes, "CLASSES", tuple(names))  # the real 19 would not fit this 6-class toy
    ev = evaluate_package(pkg, root, split="val", resize=True)
    assert ev.classes == names and ev.images == 2


def test_eval_refuses_masks_without_a_labelled_pixel_as_calibrate_does(toy, tmp_path):
    """A mask that is all 255 has nothing to score: refused before it runs, naming it, not averaged in silently."""
    from PIL import Image

    from mesc.evaluation.evaluate import evaluate_package
    from mesc.errors import MescError

    pkg, data = toy
    copy = tmp_path / "data"
    shutil.copytree(data, copy)
    masks = sorted((copy / "masks").glob("*.png"))
    Image.fromarray(np.full((64, 128), 255, np.uint8)).save(masks[1])
    with pytest.raises(MescError, match=rf"1 mask\(s\) in {copy} have no labelled pixel .*: {masks[1].name}"):
        evaluate_package(pkg, copy, resize=True, batch=8)
