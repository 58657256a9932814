"""The one atomic writer (``salient_timm.io.atomic``): a reader sees the old file or the whole new one."""

import os

import pytest
import torch

from salient_timm.io.atomic import atomic_copy, atomic_file, atomic_write_text
from salient_timm.train.checkpoint import save_checkpoint
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
    save_checkpoint(str(tmp_path / "last.pth"), {"epoch": 0, "weights": torch.zeros(2)})
    write_metrics(str(tmp_path), [{"epoch": 1, "test_top1": 50.0}])
    assert written == ["last.pth", "metrics.json", "metrics.csv"]
    assert torch.load(tmp_path / "last.pth")["epoch"] == 0
    assert (tmp_path / "metrics.csv").read_text().splitlines() == ["epoch,test_top1", "1,50.0"]
