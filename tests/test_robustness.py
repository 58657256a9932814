"""Nothing lost, nothing raw: bad input gets one line; kills, Ctrl-C and concurrent runs lose no work.

The bad-input families come from ``scripts/fuzz_cli.py`` (the same cases the closing note counts).
"""

import atexit
import importlib.util
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from salient_timm import RunFolderError
from salient_timm.train.checkpoint import load_checkpoint
from salient_timm.train.cli import main
from salient_timm.train.run_folder import lock_run_folder

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
FAST = ["--dataset", "digits", "--img-size", "16", "--no-progress", "--model", "resnet18"]


def _fuzz():
    spec = importlib.util.spec_from_file_location("fuzz_cli", ROOT / "scripts" / "fuzz_cli.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


FUZZ = _fuzz()
_FUZZ_DIR = tempfile.mkdtemp(prefix="salient-fuzz-")
atexit.register(shutil.rmtree, _FUZZ_DIR, ignore_errors=True)
CASES = {name: (cmd, args, fail) for name, cmd, args, fail in FUZZ.cases(_FUZZ_DIR)}


SLOW_CASES = {"train --attn se retrofit --export-hf"}  # a whole training run before the export: -m slow
assert SLOW_CASES <= set(CASES), SLOW_CASES - set(CASES)


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in SLOW_CASES else n for n in CASES])
def test_bad_input_gets_one_clean_line(name):
    command, args, should_fail = CASES[name]
    verdict, text = FUZZ.classify(command, args, should_fail)
    assert verdict == "clean", f"{name}: {verdict}: {text}"


def _run(out, *extra, check=True):
    return subprocess.run(
        [str(BIN / "salient-train"), *FAST, "--out", str(out), *extra], capture_output=True, text=True, check=check
    )


def _resume(out, *extra, check=True):
    return subprocess.run(
        [str(BIN / "salient-train"), "--resume", str(out), "--no-progress", *extra],
        capture_output=True,
        text=True,
        check=check,
    )


def _ctrl_c_as_in_a_terminal() -> None:
    """SIGINT at its default in the child, as in a terminal's foreground job. A shell starts background jobs
    (``cmd &`` without job control: CI scripts, nohup'd runs) with SIGINT ignored, their children inherit that, and
    Python then installs no KeyboardInterrupt handler: the run would ignore the test's Ctrl-C (seen 2026-12-06)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _start_until(out: Path, name: str, *extra: str, timeout: float = 120) -> subprocess.Popen:
    """Start salient-train on ``out`` in the background; return once ``out/name`` exists (or ``timeout`` passed)."""
    proc = subprocess.Popen(
        [str(BIN / "salient-train"), *FAST, "--out", str(out), *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=_ctrl_c_as_in_a_terminal,
    )
    deadline = time.time() + timeout
    while not (out / name).exists() and time.time() < deadline:
        time.sleep(0.05)
    return proc


def _consistent(out: Path, epochs: int) -> None:
    """last.pth, best.pth and the metrics agree, and no temp file is left."""
    last = load_checkpoint(str(out / "last.pth"))
    history = last["metrics"]
    assert int(last["epoch"]) == epochs - 1 and len(history) == epochs
    best_row = max(history, key=lambda h: h["test_top1"])
    assert int(load_checkpoint(str(out / "best.pth"))["epoch"]) == best_row["epoch"] - 1
    assert json.loads((out / "metrics.json").read_text()) == history
    assert len((out / "metrics.csv").read_text().strip().splitlines()) == epochs + 1
    assert not list(out.glob(".tmp-*")) and not list(out.glob("*.tmp"))


@pytest.fixture(scope="module")
def two_epochs(tmp_path_factory):
    out = tmp_path_factory.mktemp("robust") / "run"
    _run(out, "--epochs", "2")
    return out


@pytest.mark.parametrize(
    "size_args",
    [["--img-size", "16"], ["--img-size", "32"]],  # 1x1 at the last stage, and (no CIFAR stem) at 32 px too
    ids=["16px", "32px"],
)
def test_batch_1_on_a_1x1_map_is_refused_before_training_and_leaves_no_folder(size_args, tmp_path):
    out = tmp_path / "runs" / "b1"
    args = ["--model", "salient_resnet18", "--dataset", "digits", "-b", "1", "--epochs", "1", "--out", str(out)]
    result = CliRunner().invoke(main, [*args, *size_args])
    assert result.exit_code == 2 and result.exception is None or isinstance(result.exception, SystemExit)
    error = result.output.strip().splitlines()[-1]
    assert "--batch-size 1:" in error and "one value per channel (batch 1 with a 1x1 map)" in error
    assert "--batch-size 2 or more, --cifar-stem or a larger --img-size" in error
    assert not (tmp_path / "runs").exists()  # before: a 73-line traceback and args.json left behind


def test_batch_1_trains_where_every_batchnorm_sees_more_than_one_value():
    from salient_timm import ModelSpec
    from salient_timm.checks import SingleValueBatchNormError, check_runs

    model = ModelSpec("salient_resnet18", cifar_stem=True, num_classes=10).build()
    check_runs(model, (1, 3, 16, 16), train=True)  # 2x2 at the last stage: 4 values per channel
    with pytest.raises(SingleValueBatchNormError, match="layer4.0.bn1"):
        check_runs(model, (1, 3, 8, 8), train=True)
    check_runs(model, (1, 3, 8, 8))  # evaluation uses running statistics: batch 1 is fine


def test_a_failed_start_leaves_no_run_folder(tmp_path):
    """A data set that cannot be read fails before anything is written: no folder holding only a .lock."""
    out = tmp_path / "runs" / "fm"
    args = [
        "--model",
        "resnet18",
        "--dataset",
        "fashion-mnist",
        "--data-dir",
        str(tmp_path / "nowhere"),
        "--out",
        str(out),
    ]
    result = CliRunner().invoke(main, args)
    assert result.exit_code != 0 and "Traceback" not in result.output
    assert not (tmp_path / "runs").exists()


def test_a_failing_run_keeps_a_folder_that_existed_and_what_is_in_it(tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    args = ["--model", "salient_resnet18", "--dataset", "digits", "-b", "1", "--epochs", "1", "--out", str(out)]
    assert CliRunner().invoke(main, args).exit_code == 2
    assert (out / "notes.txt").read_text() == "keep me"


def test_a_locked_run_folder_refuses_a_second_run_at_once(tmp_path, capsys):
    out = tmp_path / "busy"
    with lock_run_folder(str(out)):
        with pytest.raises(SystemExit) as exit_:
            main([*FAST, "--out", str(out), "--epochs", "1"])
    assert exit_.value.code == 1
    err = capsys.readouterr().err
    assert f"run folder {out} is in use by another salient-train (pid {os.getpid()})" in err
    assert not (out / "last.pth").exists()
    with lock_run_folder(str(out)):  # released: the folder can be locked again
        pass


def test_the_lock_is_exclusive_in_the_library_too(tmp_path):
    with lock_run_folder(str(tmp_path / "x")):
        with pytest.raises(RunFolderError, match="in use"):
            with lock_run_folder(str(tmp_path / "x")):
                pass


@pytest.mark.slow
def test_two_concurrent_runs_on_one_folder_cannot_overwrite_each_other(tmp_path):
    out = tmp_path / "shared"
    first = _start_until(out, "args.json", "--epochs", "2")
    second = _run(out, "--epochs", "2", check=False)
    assert second.returncode == 1 and "is in use by another salient-train" in second.stderr
    assert "Traceback" not in second.stderr
    assert first.wait(timeout=1200) == 0
    _consistent(out, 2)


@pytest.mark.slow  # kill-and-resume
def test_resume_repairs_what_a_kill_between_last_and_best_left(two_epochs, tmp_path):
    """Killed after last.pth (epoch 2, the best) was renamed, before best.pth and the metrics were written."""
    out = tmp_path / "half"
    shutil.copytree(two_epochs, out)
    last = load_checkpoint(str(out / "last.pth"))
    best_epoch = max(last["metrics"], key=lambda h: h["test_top1"])["epoch"]
    assert best_epoch == 2, "this test needs the second epoch to be the best"
    stale_best = dict(last, epoch=0, metrics=last["metrics"][:1])
    torch.save(stale_best, out / "best.pth")  # what best.pth held after epoch 1
    (out / "metrics.json").write_text(json.dumps(last["metrics"][:1]))
    (out / ".tmp-abc123.pth").write_bytes(b"half a checkpoint")
    result = _resume(out)
    assert "removed 1 temp file(s)" in result.stdout
    assert "repaired" in result.stdout and "best.pth restored from last.pth (epoch 2, the best)" in result.stdout
    assert "done:" in result.stdout and "best test top-1" in result.stdout
    _consistent(out, 2)


@pytest.mark.slow  # kill-and-resume
def test_a_run_killed_before_its_first_epoch_restarts_with_its_options(two_epochs, tmp_path):
    out = tmp_path / "early"
    out.mkdir()
    args = json.loads((two_epochs / "args.json").read_text())
    (out / "args.json").write_text(json.dumps({**args, "out": str(out), "resume": None}))
    result = _resume(out)
    assert "has no finished epoch yet; starting the run from epoch 1" in result.stdout
    _consistent(out, 2)


@pytest.mark.slow
def test_ctrl_c_ends_with_one_line_and_the_run_resumes(tmp_path):
    """Interrupted after its first epoch, with many left (so the run cannot finish before the signal lands,
    however fast the machine): exit 130, one line, and the run resumes to its end."""
    out = tmp_path / "interrupted"
    proc = _start_until(out, "metrics.json", "--epochs", "12", "--train-subset", "128", timeout=600)
    assert (out / "curves.png").exists()  # written each epoch (before metrics.json), not only at the end
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and f"continue with --resume {out}" in err.strip().splitlines()[-1]
    _resume(out)
    _consistent(out, 12)


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_kill_at_random_moments_then_resume_to_the_end(tmp_path):
    """SIGKILL a 6-epoch run at random moments (start-up, epochs, checkpoint writes), resume each time."""
    rng = random.Random(0)
    out = tmp_path / "killed"
    epochs, kills = 6, 0
    command = [str(BIN / "salient-train"), *FAST, "--out", str(out), "--epochs", str(epochs)]
    for _attempt in range(20):
        # killed before args.json existed (start-up: imports, data, model checks): nothing to resume, the user
        # runs the same command again (the folder holds no run, so it is accepted)
        started = (out / "args.json").exists()
        proc = subprocess.Popen(
            [str(BIN / "salient-train"), "--resume", str(out), "--no-progress"] if started else command,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            proc.wait(timeout=rng.uniform(2.0, 7.0))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            kills += 1
            continue
        assert proc.returncode == 0, proc.stderr.read()
        break
    else:
        result = _resume(out)
        assert result.returncode == 0
    assert kills >= 3, "too few kills to test anything"
    _consistent(out, epochs)
