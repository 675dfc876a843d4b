"""MESS training's two stages end to end: the loop, its checks before training, checkpoints and
resume, and mesc train."""

import math
import re
import shutil
from pathlib import Path

import pytest
import torch
import torch.nn as nn
from click.testing import CliRunner

from mesc import training
from mesc.cli import cli
from tiny_nets import TinyMultiExit, tiny_candidates, tiny_model
import tiny_nets

# the toy nets' file, as a --model spec (FILE:factory)
NETS = tiny_nets.__file__


def test_two_stage_training_lowers_the_loss_and_stage2_keeps_the_final_exit(scenes, tmp_path):
    torch.set_num_threads(2)
    model = tiny_model()
    cfg = training.TrainConfig(epochs1=4, epochs2=3, batch=4, lr=1e-2, seed=0, crop=(32, 48))
    summary = training.train(model, scenes, out=tmp_path / "ckpt.pt", config=cfg, progress=False, log=None)
    assert summary["exits"] == 3
    assert summary["stage1_loss"][-1] < summary["stage1_loss"][0]
    assert summary["stage2_loss"][-1] < summary["stage2_loss"][0]
    state = torch.load(tmp_path / "ckpt.pt", weights_only=True)
    assert state.keys() == model.state_dict().keys()
    assert all(v.dtype == torch.float32 for v in state.values() if v.is_floating_point())

    # stage 2 alone: backbone, final head and their BatchNorm statistics stay as they were
    frozen_before = {k: v.clone() for k, v in model.state_dict().items() if not k.startswith(("exits.0", "exits.1"))}
    early_before = model.exits[0][0].weight.detach().clone()
    training.train(model, scenes, config=training.TrainConfig(epochs1=0, epochs2=1, batch=4), progress=False, log=None)
    after = model.state_dict()
    assert all(torch.equal(v, after[k]) for k, v in frozen_before.items())
    assert not torch.equal(early_before, model.exits[0][0].weight)
    assert all(p.requires_grad for p in model.parameters())


def test_stage2_trains_every_candidate_on_a_stage1_backbone(scenes, tmp_path):
    torch.set_num_threads(2)
    stage1 = tiny_model()
    training.train(stage1, scenes, out=tmp_path / "stage1.pt", progress=False, log=None,
                   config=training.TrainConfig(epochs1=1, epochs2=0, batch=4, crop=(32, 48)))
    model = tiny_candidates()
    untrained = {k: v.clone() for k, v in model.state_dict().items()}
    logged = []
    summary = training.train(model, scenes, config=training.TrainConfig(epochs1=0, epochs2=1, batch=4, crop=(32, 48)),
                             progress=False, log=logged.append, init=tmp_path / "stage1.pt", val_dir=scenes)
    trained, shipped = model.state_dict(), stage1.state_dict()
    # backbone and final head: the stage-1 weights, untouched by stage 2 (BatchNorm statistics too)
    frozen = [k for k in shipped if k.startswith(("blocks.", "exits.2."))]
    assert frozen and all(torch.equal(trained[k], shipped[k]) for k in frozen)
    # every candidate head learned
    for p in (0, 1):
        for j in (0, 1):
            key = f"exits.{p}.{j}.0.weight"
            assert not torch.equal(trained[key], untrained[key]), key
    init = summary["init"]
    assert sorted(init["loaded"]) == sorted(frozen)
    assert set(init["skipped"]) == {k for k in shipped if k.startswith(("exits.0.", "exits.1."))}
    assert set(init["missing"]) == {k for k in trained if k.startswith(("exits.0.", "exits.1."))}
    assert any("backbone-only load of" in line and "stage1.pt" in line for line in logged)
    # per-candidate evaluation, in flattened order, named as the manifest names them
    assert summary["val_exits"] == ["exit0c0", "exit0c1", "exit1c0", "exit1c1", "exit2"]
    assert len(summary["val_miou"]) == 5 and len(summary["history"][-1]["loss_per_exit"]) == 4
    assert any(line.startswith("exit1c1 ") for line in "\n".join(logged).splitlines())


def test_init_refuses_a_checkpoint_of_another_shape(scenes, tmp_path):
    torch.save(TinyMultiExit(width=4).state_dict(), tmp_path / "narrow.pt")
    from mesc.errors import MescError

    with pytest.raises(MescError, match=r"narrow.pt: 'blocks.0.0.weight' has shape \(4, 3, 3, 3\)"):
        training.train(tiny_candidates(), scenes, config=_quick(epochs1=0, epochs2=1), progress=False, log=None,
                       init=tmp_path / "narrow.pt")


def test_train_cli_init_exit_dropout_and_alpha(scenes, tmp_path):
    stage1 = tmp_path / "stage1.pt"
    base = ["train", "--data", str(scenes), "--batch", "4", "--crop", "32x32"]
    res = CliRunner().invoke(cli, base + ["--model", f"{NETS}:tiny_model", "--epochs1", "1", "--epochs2", "0",
                                          "--exit-dropout", "eq2", "-o", str(stage1)])
    assert res.exit_code == 0, res.output
    out = tmp_path / "search.pt"
    res = CliRunner().invoke(cli, base + ["--model", f"{NETS}:tiny_candidates", "--init", str(stage1),
                                          "--epochs1", "0", "--epochs2", "1", "--val", str(scenes), "-o", str(out)])
    assert res.exit_code == 0, res.output
    assert "backbone-only load of" in res.output and "skipped from the checkpoint" in res.output
    assert "exit0c1" in res.output and out.is_file()
    for extra, msg in ((["--alpha", "1.5"], "--alpha must be in [0, 1]"),
                       (["--exit-dropout", "random"], "'random' is not one of 'eq2', 'prose'"),
                       (["--init", str(stage1), "--weights", str(stage1)], "give it or --init, not both"),
                       (["--init", str(tmp_path)], "is a directory"),
                       (["--init", str(tmp_path / "nope.pt")], "nope.pt: file not found")):
        res = CliRunner().invoke(cli, base + ["--model", f"{NETS}:tiny_candidates", "--epochs1", "0",
                                              "--epochs2", "1", "-o", str(tmp_path / "x.pt")] + extra)
        assert res.exit_code == 2 and msg in res.output and "Traceback" not in res.output, (extra, res.output)
    assert not (tmp_path / "x.pt").exists()
    res = CliRunner().invoke(cli, base + ["--model", f"{NETS}:tiny_candidates", "--epochs1", "0", "--epochs2", "1",
                                          "--init", str(stage1), "-o", str(stage1), "--force"])
    assert res.exit_code == 2 and "is the input --init" in res.output


def test_train_cli(scenes, tmp_path):
    ckpt = tmp_path / "out.pt"
    args = ["train", "--model", f"{NETS}:tiny_model", "--data", str(scenes), "--val", str(scenes),
            "--epochs1", "1", "--epochs2", "1", "--batch", "4", "--crop", "32x32", "-o", str(ckpt)]
    res = CliRunner().invoke(cli, args)
    assert res.exit_code == 0, res.output
    assert ckpt.is_file() and "mIoU" in res.output
    res = CliRunner().invoke(cli, args[:-2] + ["--data", str(tmp_path / "nope"), "-o", str(ckpt), "--force"])
    assert res.exit_code == 2 and "nope" in res.output
    res = CliRunner().invoke(cli, args + ["--batch", "1"])
    assert res.exit_code == 2 and "--batch" in res.output


def _quick(**kw):
    return training.TrainConfig(**{"epochs1": 1, "epochs2": 0, "batch": 4, **kw})


@pytest.mark.parametrize("kw, msg", [
    ({"lr": float("nan")}, "lr must be a finite number > 0, got nan"),
    ({"lr": float("inf")}, "lr must be a finite number > 0, got inf"),
    ({"lr": 0.0}, "lr must be a finite number > 0"),
    ({"lr2": float("nan")}, "lr2 must be a finite number > 0"),
    ({"epochs1": 0, "epochs2": 0}, "at least one epoch is needed"),
    ({"epochs1": -1, "epochs2": 3}, "epochs1 must be an integer >= 0"),
    ({"batch": 1}, "batch must be an integer >= 2"),
    ({"alpha": 1.5}, r"alpha must be a number in \[0, 1\]"),
    ({"alpha": float("nan")}, r"alpha must be a number in \[0, 1\]"),
    ({"crop": (0, 16)}, "crop must be None or"),
    ({"crop": (64, 16)}, r"crop 64x16 is larger than the images \(32x64\)"),
    ({"threads": 0}, "threads must be None or an integer >= 1"),
])
def test_bad_settings_stop_before_training_and_save_nothing(scenes, tmp_path, kw, msg):
    out = tmp_path / "ckpt.pt"
    with pytest.raises(training.TrainError, match=msg):
        training.train(tiny_model(), scenes, out=out, config=_quick(**kw), progress=False, log=None)
    assert not out.exists()


def test_epochs1_0_with_nothing_for_stage_2_is_refused(scenes, tmp_path):
    class FinalOnly(nn.Module):
        def __init__(self):
            super().__init__()
            self.net = tiny_model()

        def forward(self, x):
            return [self.net(x)[-1]]

    with pytest.raises(training.TrainError, match="nothing would be trained"):
        training.train(FinalOnly(), scenes, out=tmp_path / "c.pt", config=_quick(epochs1=0, epochs2=3),
                       progress=False, log=None)
    assert not (tmp_path / "c.pt").exists()


def test_an_existing_checkpoint_is_kept_unless_force(scenes, tmp_path):
    out = tmp_path / "ckpt.pt"
    out.write_bytes(b"precious")
    with pytest.raises(training.TrainError, match=r"ckpt.pt already exists; pass --force to overwrite it"):
        training.train(tiny_model(), scenes, out=out, config=_quick(), progress=False, log=None)
    assert out.read_bytes() == b"precious"
    training.train(tiny_model(), scenes, out=out, config=_quick(), progress=False, log=None, force=True)
    assert torch.load(out, weights_only=True).keys() == tiny_model().state_dict().keys()


def test_an_unwritable_output_is_refused_before_training(scenes, tmp_path, monkeypatch):
    (tmp_path / "file").write_text("")
    with pytest.raises(training.TrainError, match="file is not a directory"):
        training.check_output(tmp_path / "file" / "sub" / "ckpt.pt")
    with pytest.raises(training.TrainError, match="is a directory"):
        training.check_output(tmp_path)

    def read_only(*a, **kw):
        raise OSError(30, "Read-only file system")

    from mesc.package import outputs

    monkeypatch.setattr(outputs.tempfile, "TemporaryFile", read_only)
    with pytest.raises(training.TrainError, match=r"new/ckpt.pt: cannot write in .* \(Read-only file system\)"):
        training.train(tiny_model(), scenes, out=tmp_path / "new" / "ckpt.pt", config=_quick(), progress=False,
                       log=None)
    assert not (tmp_path / "new").exists()


@pytest.mark.parametrize("epochs1, epochs2, poisoned, stage", [
    (1, 1, 2, r"stage 1 \(exit dropout\): the loss is nan at epoch 1/1, step 1/"),
    (0, 2, 0, r"stage 2 \(PFD\): the loss is nan at epoch 1/2, step 1/"),
])
def test_a_nan_loss_stops_training_and_saves_nothing(scenes, tmp_path, epochs1, epochs2, poisoned, stage):
    model = tiny_model()
    with torch.no_grad():
        model.exits[poisoned][-1].bias.fill_(float("nan"))
    out = tmp_path / "ckpt.pt"
    cfg = _quick(epochs1=epochs1, epochs2=epochs2)
    with pytest.raises(training.TrainError, match=stage + ".*nothing was saved"):
        training.train(model, scenes, out=out, config=cfg, progress=False, log=None)
    assert not out.exists()
    assert all(p.requires_grad for p in model.parameters())


def test_train_cli_output_rules(scenes, tmp_path):
    args = ["train", "--model", f"{NETS}:tiny_model", "--data", str(scenes), "--epochs1", "1", "--epochs2", "0",
            "--batch", "4"]
    before = {p: p.read_bytes() for p in scenes.rglob("*") if p.is_file()}
    res = CliRunner().invoke(cli, args + ["-o", str(scenes / "ckpt.pt")])
    assert res.exit_code == 2 and "lies inside the input --data" in res.output
    res = CliRunner().invoke(cli, args + ["-o", str(scenes / "meta.json"), "--force"])
    assert res.exit_code == 2 and "is the input" not in res.output and "lies inside the input --data" in res.output
    assert {p: p.read_bytes() for p in scenes.rglob("*") if p.is_file()} == before
    res = CliRunner().invoke(cli, args + ["-o", NETS, "--force"])
    assert res.exit_code == 2 and "is the input --model" in res.output
    existing = tmp_path / "old.pt"
    existing.write_bytes(b"old")
    res = CliRunner().invoke(cli, args + ["-o", str(existing)])
    assert res.exit_code == 2 and "already exists; pass --force" in res.output and existing.read_bytes() == b"old"
    (tmp_path / "file").write_text("")
    res = CliRunner().invoke(cli, args + ["-o", str(tmp_path / "file" / "c.pt")])
    assert res.exit_code == 2 and "is not a directory" in res.output and "Traceback" not in res.output


def test_a_resumed_run_equals_an_uninterrupted_one(scenes, tmp_path):
    torch.set_num_threads(1)
    cfg = dict(epochs1=2, epochs2=1, batch=4, lr=1e-2, seed=0, crop=(32, 48))
    whole = tiny_model()
    training.train(whole, scenes, config=training.TrainConfig(**cfg), progress=False, log=None)

    class Interrupted(Exception):
        pass

    def stop_after_first_epoch(msg):
        if "epoch 1/2" in msg:
            raise Interrupted

    ckpt, jsonl = tmp_path / "train.pt", tmp_path / "log.jsonl"
    with pytest.raises(Interrupted):
        training.train(tiny_model(), scenes, config=training.TrainConfig(**cfg), progress=False,
                       log=stop_after_first_epoch, checkpoint=ckpt, log_file=jsonl)
    saved = torch.load(ckpt, weights_only=True)
    assert (saved["stage"], saved["epoch"]) == (1, 1) and {"optimizer", "scheduler", "config"} <= saved.keys()
    resumed = tiny_model()
    summary = training.train(resumed, scenes, config=training.TrainConfig(**cfg), progress=False, log=None,
                             checkpoint=ckpt, resume=ckpt, log_file=jsonl)
    assert len(summary["stage1_loss"]) == 2 and len(summary["stage2_loss"]) == 1
    diff = max((a - b).abs().max().item() for a, b in zip(whole.state_dict().values(), resumed.state_dict().values())
               if a.is_floating_point())
    assert diff < 1e-5, diff
    from mesc.training import log as training_log

    assert [(r["stage"], r["epoch"]) for r in training_log.read(jsonl)] == [(1, 1), (1, 2), (2, 1)]
    # the training checkpoint is also a weights file for mesc export -w
    from mesc import models

    fresh = tiny_model()
    models.load_checkpoint(fresh, ckpt)
    assert all(torch.equal(a, b) for a, b in zip(fresh.state_dict().values(), resumed.state_dict().values()))


def test_a_resumed_eq2_run_restores_the_batch_index(scenes, tmp_path, monkeypatch):
    """j counts stage 1's batches from 1 across epochs; --resume continues it, it does not restart
    at 1 (12 scenes, batch 4: 3 batches an epoch, so epoch 2 starts at j = 4, an even j)."""
    schedule = training.exit_dropout_schedule
    seen = []

    def recording(batch_index, num_exits, mode="prose"):
        seen.append((batch_index + 1, schedule(batch_index, num_exits, mode)))
        return seen[-1][1]

    # the loop calls the schedule by the name it imported
    monkeypatch.setattr("mesc.training.loop.exit_dropout_schedule", recording)
    torch.set_num_threads(1)
    cfg = dict(epochs1=2, epochs2=0, batch=4, lr=1e-2, seed=0, crop=(32, 48), exit_dropout="eq2")
    training.train(tiny_model(), scenes, config=training.TrainConfig(**cfg), progress=False, log=None)
    odd, even = [0, 2], [0, 1, 2]
    assert seen == [(1, odd), (2, even), (3, odd), (4, even), (5, odd), (6, even)]

    class Interrupted(Exception):
        pass

    def stop_after_first_epoch(msg):
        if "epoch 1/2" in msg:
            raise Interrupted

    seen.clear()
    ckpt = tmp_path / "train.pt"
    with pytest.raises(Interrupted):
        training.train(tiny_model(), scenes, config=training.TrainConfig(**cfg), progress=False,
                       log=stop_after_first_epoch, checkpoint=ckpt)
    assert [j for j, _ in seen] == [1, 2, 3]
    seen.clear()
    training.train(tiny_model(), scenes, config=training.TrainConfig(**cfg), progress=False, log=None,
                   checkpoint=ckpt, resume=ckpt)
    assert seen == [(4, even), (5, odd), (6, even)]


def test_resume_refuses_a_plain_state_dict(scenes, tmp_path):
    torch.save(tiny_model().state_dict(), tmp_path / "w.pt")
    with pytest.raises(training.TrainError, match="not a mesc training checkpoint"):
        training.train(tiny_model(), scenes, config=_quick(), progress=False, log=None, resume=tmp_path / "w.pt")


def test_resume_refuses_other_settings_or_splits(scenes, tmp_path):
    ckpt = tmp_path / "train.pt"
    training.train(tiny_model(), scenes, config=_quick(crop=(32, 48)), progress=False, log=None, checkpoint=ckpt)
    assert torch.load(ckpt, weights_only=True)["config"]["split"] is None
    with pytest.raises(training.TrainError, match=r"other settings \(epochs1 1 -> 2; crop \[32, 48\] -> None\)"):
        training.train(tiny_model(), scenes, config=_quick(epochs1=2), progress=False, log=None, resume=ckpt)
    with pytest.raises(training.TrainError, match=r"other settings \(val_split None -> 'val'\)"):
        training.train(tiny_model(), scenes, config=_quick(crop=(32, 48)), progress=False, log=None, resume=ckpt,
                       val_split="val")
    # where the run goes may change: threads, workers, device, mixed precision
    summary = training.train(tiny_model(), scenes, config=_quick(crop=(32, 48), threads=1, amp=False),
                             progress=False, log=None, resume=ckpt)
    assert len(summary["stage1_loss"]) == 1


def test_resume_does_not_load_backbone_weights_again(scenes, tmp_path, monkeypatch):
    from mesc.models import pretrained

    ckpt = tmp_path / "train.pt"
    training.train(tiny_model(), scenes, config=_quick(), progress=False, log=None, checkpoint=ckpt)

    def overwrite(*args):
        raise AssertionError("the checkpoint already holds every weight")

    monkeypatch.setattr(pretrained, "load_backbone_weights", overwrite)
    training.train(tiny_model(), scenes, config=_quick(), progress=False, log=None, resume=ckpt,
                   backbone_weights=tmp_path / "imagenet.pth")


def test_mask_ids_beyond_the_model_classes_are_named(scenes):
    with pytest.raises(training.TrainError, match=r"class id 5 .* model predicts 3 classes \(ids 0..2"):
        training.train(TinyMultiExit(num_classes=3), scenes, config=_quick(), progress=False, log=None)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_two_stage_training_on_cuda_with_amp(scenes, tmp_path):
    """Mixed precision on the GPU trains as on the CPU and saves an FP32 checkpoint that loads anywhere."""
    model = tiny_model()
    cfg = training.TrainConfig(epochs1=4, epochs2=2, batch=4, lr=1e-2, seed=0, crop=(32, 48), device="cuda:0")
    summary = training.train(model, scenes, out=tmp_path / "ckpt.pt", config=cfg, progress=False, log=None)
    assert summary["stage1_loss"][-1] < summary["stage1_loss"][0]
    assert all(math.isfinite(x) for x in summary["stage1_loss"] + summary["stage2_loss"])
    state = torch.load(tmp_path / "ckpt.pt", weights_only=True, map_location="cpu")
    assert all(v.dtype == torch.float32 and v.device.type == "cpu" for v in state.values() if v.is_floating_point())
    fresh = tiny_model()
    fresh.load_state_dict(state)
    assert len(training.evaluate(fresh, scenes)["miou"]) == 3


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_candidate_stage2_on_cuda_with_amp(scenes, tmp_path):
    """Stage 2 of the candidates on a stage-1 backbone, in mixed precision on the GPU: the backbone
    and final head stay the stage-1 ones, every candidate learns, the losses stay finite."""
    stage1 = tiny_model()
    training.train(stage1, scenes, out=tmp_path / "stage1.pt", progress=False, log=None,
                   config=training.TrainConfig(epochs1=1, epochs2=0, batch=4, crop=(32, 48)))
    model = tiny_candidates()
    untrained = {k: v.clone() for k, v in model.state_dict().items()}
    cfg = training.TrainConfig(epochs1=0, epochs2=2, batch=4, lr=1e-2, crop=(32, 48), device="cuda:0")
    summary = training.train(model, scenes, config=cfg, progress=False, log=None, init=tmp_path / "stage1.pt",
                             val_dir=scenes)
    assert all(math.isfinite(x) for x in summary["stage2_loss"])
    trained = {k: v.cpu() for k, v in model.state_dict().items()}
    shipped = stage1.state_dict()
    assert all(torch.equal(trained[k], shipped[k]) for k in summary["init"]["loaded"])
    assert all(not torch.equal(trained[f"exits.{p}.{j}.0.weight"], untrained[f"exits.{p}.{j}.0.weight"])
               for p in (0, 1) for j in (0, 1))
    assert summary["val_exits"] == ["exit0c0", "exit0c1", "exit1c0", "exit1c1", "exit2"]


# -- every file a run writes goes through the output rules every command follows ------------------

def _train_args(scenes, model_file=NETS, *extra):
    return ["train", "--model", f"{model_file}:tiny_model", "--data", str(scenes), "--epochs1", "1", "--epochs2", "0",
            "--batch", "4", *map(str, extra)]


def test_train_never_writes_over_what_it_reads_even_with_force(scenes, tmp_path):
    model_file = tmp_path / "my_model.py"  # a copy: on the old code this test destroyed its model file
    shutil.copy(NETS, model_file)
    weights = tmp_path / "start.pt"
    torch.save(tiny_model().state_dict(), weights)
    source, kept = model_file.read_bytes(), weights.read_bytes()
    for extra, named in (
            (["--log", model_file], "--log .* is the input --model"),  # the model's own source file
            (["--log", tmp_path / "log.jsonl", "-w", weights, "--checkpoint", weights],
             "--checkpoint .* is the input --weights"),  # the weights the run started from
            (["--checkpoint", scenes / "ckpt.pt"], "--checkpoint .* lies inside the input --data")):
        res = CliRunner().invoke(cli, _train_args(scenes, model_file, "-o", tmp_path / "out.pt", "--force", *extra))
        assert res.exit_code == 2 and re.search(named, res.output), res.output
        assert len(res.output.strip().splitlines()) == 1
    assert model_file.read_bytes() == source and weights.read_bytes() == kept
    assert not (tmp_path / "my_model.png").exists()


def test_the_curves_png_is_checked_like_any_output(scenes, tmp_path):
    weights = tmp_path / "run.png"  # a weights file that happens to share the log's stem
    torch.save(tiny_model().state_dict(), weights)
    kept = weights.read_bytes()
    res = CliRunner().invoke(cli, _train_args(scenes, NETS, "-w", weights, "--log", tmp_path / "run.jsonl", "-o",
                                              tmp_path / "out.pt", "--force"))
    assert res.exit_code == 2 and "--log's curves" in res.output and "is the input --weights" in res.output
    assert weights.read_bytes() == kept
    mine = tmp_path / "mine.png"
    mine.write_bytes(b"my figure")
    res = CliRunner().invoke(cli, _train_args(scenes, NETS, "--log", tmp_path / "mine.jsonl", "-o",
                                              tmp_path / "o.pt"))
    assert res.exit_code == 2 and "mine.png already exists; pass --force" in res.output
    assert mine.read_bytes() == b"my figure"


def test_an_existing_log_is_kept_unless_force_and_until_the_first_epoch(scenes, tmp_path):
    log = tmp_path / "notes.jsonl"
    log.write_text("my own notes\n")
    with pytest.raises(training.TrainError, match="notes.jsonl already exists; pass --force"):
        training.train(tiny_model(), scenes, out=tmp_path / "o.pt", config=_quick(), progress=False, log=None,
                       log_file=log)
    assert log.read_text() == "my own notes\n"

    class Stop(Exception):
        pass

    def stop_at_start(msg):
        raise Stop

    with pytest.raises(Stop):  # a run stopped before its first epoch leaves the old log as it was
        training.train(tiny_model(), scenes, out=tmp_path / "o.pt", config=_quick(), progress=False,
                       log=stop_at_start, log_file=log, force=True)
    assert log.read_text() == "my own notes\n"
    training.train(tiny_model(), scenes, out=tmp_path / "o.pt", config=_quick(), progress=False, log=None,
                   log_file=log, force=True)
    from mesc.training import log as training_log

    assert [(r["stage"], r["epoch"]) for r in training_log.read(log)] == [(1, 1)]


def test_two_outputs_of_one_run_are_never_the_same_file(scenes, tmp_path):
    out = tmp_path / "o.pt"
    with pytest.raises(training.TrainError, match=r"--checkpoint .*o.pt is also the -o .*o.pt"):
        training.train(tiny_model(), scenes, out=out, checkpoint=out, config=_quick(), progress=False, log=None)
    with pytest.raises(training.TrainError, match=r"--log's curves .*o.png is also the -o"):
        training.train(tiny_model(), scenes, out=tmp_path / "o.png", log_file=tmp_path / "o.jsonl",
                       plot=tmp_path / "o.png", config=_quick(), progress=False, log=None)
    assert not out.exists()


def test_a_resume_file_is_an_input_unless_the_checkpoint_continues_it(scenes, tmp_path):
    ckpt = tmp_path / "run.train.pt"
    training.train(tiny_model(), scenes, config=_quick(), progress=False, log=None, checkpoint=ckpt)
    kept = ckpt.read_bytes()
    with pytest.raises(training.TrainError, match=r"the output -o .*run.train.pt is the input --resume"):
        training.train(tiny_model(), scenes, out=ckpt, config=_quick(), progress=False, log=None, resume=ckpt,
                       force=True)
    assert ckpt.read_bytes() == kept


def test_resuming_another_models_checkpoint_is_one_line(scenes, tmp_path):
    from mesc.errors import ModelLoadError

    ckpt = tmp_path / "run.train.pt"
    training.train(tiny_model(), scenes, config=_quick(), progress=False, log=None, checkpoint=ckpt)
    other = TinyMultiExit(width=4)  # the same names, other shapes; or other names altogether
    for model in (other, nn.Sequential(nn.Conv2d(3, 6, 1))):
        with pytest.raises(ModelLoadError) as err:
            training.train(model, scenes, config=_quick(), progress=False, log=None, resume=ckpt,
                           checkpoint=ckpt)
        text = str(err.value)
        assert text.startswith(f"--resume {ckpt} does not match the model: ") and "\n" not in text
        assert len(text) < 600, len(text)


def test_a_weights_file_whose_keys_are_not_strings_is_refused_by_name(tmp_path):
    from mesc import models
    from mesc.errors import ModelLoadError

    bad = tmp_path / "bad.pt"
    torch.save({0: torch.zeros(1), "exits.0.weight": torch.zeros(1)}, bad)
    with pytest.raises(ModelLoadError, match=r"bad.pt: a state_dict's keys are parameter names \(strings\); 1 are "
                                             r"not, e.g. 0 \(int\)"):
        models.load_checkpoint(tiny_model(), bad)
    res = CliRunner().invoke(cli, ["export", "-m", f"{NETS}:tiny_model", "-w", str(bad), "-o",
                                   str(tmp_path / "pkg")])
    assert res.exit_code == 2 and "keys are parameter names" in res.output and "Traceback" not in res.output
