"""The one atomic writer (``salient_timm.io.atomic``): a reader sees the old file or the whole new one."""

import os

import pytest
import torch

from salient_timm.io.atomic import atomic_copy, atomic_file, atomic_write_text
from salient_timm.io.checkpoint import TrainCheckpoint
from salient_timm.train.report import write_metrics


def test_a_write_that_fails_halfway_leaves_the_old_file_and_no_temp(tmp_path):
    path = tmp_path / "metrics.json"
    atomic_write_text(str(path), "old")
    with pytest.raises(RuntimeError), atomic_file(str(path), "w") as f:
        f.write("half of the new")
        raise RuntimeError("killed mid-write")
    assert path.read_text() == "old"
    assert sorted(os.listdir(tmp_path)) == ["metrics.json"]


def test_a_finished_write_replaces_the_file_whole_and_creates_its_folder(tmp_path):
    path = tmp_path / "run" / "nested" / "a.txt"
    atomic_write_text(str(path), "first")
    atomic_write_text(str(path), "second, longer")
    assert path.read_text() == "second, longer"
    atomic_copy(str(path), str(tmp_path / "b.txt"))
    assert (tmp_path / "b.txt").read_text() == "second, longer"
    assert sorted(os.listdir(path.parent)) == ["a.txt"]


def test_every_run_folder_writer_goes_through_it(tmp_path, monkeypatch):
    """Checkpoints and both metrics files are written by the atomic writer (a kill never tears them)."""
    import salient_timm.io.atomic as atomic

    written = []
    real = atomic.os.replace
    monkeypatch.setattr(atomic.os, "replace", lambda src, dst: (written.append(os.path.basename(dst)), real(src, dst)))
    TrainCheckpoint({"w": torch.zeros(2)}, {}, {}, 0, {}, {}, []).save(str(tmp_path / "last.pth"))
    write_metrics(str(tmp_path), [{"epoch": 1, "test_top1": 50.0}])
    assert written == ["last.pth", "metrics.json", "metrics.csv"]
    assert torch.load(tmp_path / "last.pth")["epoch"] == 0
    assert (tmp_path / "metrics.csv").read_text().splitlines() == ["epoch,test_top1", "1,50.0"]


def test_a_training_checkpoint_round_trips_and_names_a_malformed_entry(tmp_path):
    """The one checkpoint schema: what the trainer writes is what ModelSpec, the model card and resume read; a file
    whose entries have the wrong types is refused naming the entry, not with a KeyError deep in a reader."""
    from salient_timm.io.weights import CheckpointError

    history = [{"epoch": 1, "test_top1": 40.0}, {"epoch": 2, "test_top1": 55.0}]
    weights = {"fc.weight": torch.ones(2, 3)}
    written = TrainCheckpoint(
        weights, {"state": {}}, {"last_epoch": 1}, 1, {"torch": torch.zeros(3)}, {"epochs": 4}, history
    )
    written.save(str(tmp_path / "last.pth"))
    raw = torch.load(tmp_path / "last.pth", weights_only=True)  # timm and torch read it as a plain dict
    assert list(raw) == ["model", "optimizer", "scheduler", "scaler", "epoch", "rng", "args", "metrics"]
    read = TrainCheckpoint.read(str(tmp_path / "last.pth"))
    assert read.epoch == 1 and read.args == {"epochs": 4} and read.epoch_row() == history[1]
    assert read.weights is read.model and torch.equal(read.model["fc.weight"], weights["fc.weight"])
    ema = {"fc.weight": torch.zeros(2, 3)}
    with_ema = TrainCheckpoint.from_dict({**raw, "model_ema": ema})
    assert torch.equal(with_ema.weights["fc.weight"], ema["fc.weight"]) and "model_ema" in with_ema.to_dict()
    for key, value in (("args", ["not", "a", "dict"]), ("metrics", None), ("epoch", "two")):
        torch.save({**raw, key: value}, tmp_path / "bad.pth")
        with pytest.raises(CheckpointError, match=f"bad.pth: '{key}' is"):
            TrainCheckpoint.read(str(tmp_path / "bad.pth"))
