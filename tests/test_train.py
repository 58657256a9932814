"""salient-train: real training on digits, resume, DDP, retrofit, every dataset kind, and its errors.

Small settings keep the suite fast: resnet18 with the ImageNet stem at 16x16 (about 1.5 s an epoch
on 2 CPU cores); chance on digits is 10%.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from fixture_data import write_fake_cifar, write_idx

from salient_timm.data import DatasetError, read_idx
from salient_timm.train.checkpoint import load_checkpoint
from salient_timm.train.cli import main, parse_args, run

FAST = ["--dataset", "digits", "--img-size", "16", "--no-progress"]
BIN = Path(sys.executable).parent


def train(tmp_path, name, *extra):
    out = tmp_path / name
    return run(parse_args(["--out", str(out), *FAST, *extra])), out


def history(out):
    return json.loads((out / "metrics.json").read_text())


@pytest.fixture(scope="module")
def base_run(tmp_path_factory):
    """resnet18 trained 3 epochs on digits: the base model other tests retrofit."""
    tmp = tmp_path_factory.mktemp("base")
    summary, out = train(tmp, "base", "--model", "resnet18", "--epochs", "3")
    return summary, out


def test_digits_training_learns_and_writes_the_run_folder(base_run):
    summary, out = base_run
    assert summary["last_top1"] > 85  # chance is 10%
    rows = history(out)
    assert [r["epoch"] for r in rows] == [1, 2, 3]
    assert rows[-1]["train_loss"] < rows[0]["train_loss"]
    csv_head = (out / "metrics.csv").read_text().splitlines()[0].split(",")
    assert {"epoch", "lr", "train_loss", "train_top1", "test_loss", "test_top1", "test_top5", "img_per_s"} <= set(
        csv_head
    )
    assert (out / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    for name in ("last.pth", "best.pth"):
        state = torch.load(out / name, weights_only=True)
        assert {"model", "optimizer", "scheduler", "scaler", "epoch", "rng", "args", "metrics"} <= set(state)
    saved = json.loads((out / "args.json").read_text())
    assert saved["model"] == "resnet18"
    assert saved["channels_last"] is True  # the measured-faster format is the default on CPU too, and recorded


@pytest.mark.slow  # an end-to-end training run
def test_registered_variant_with_cifar_stem_and_recipe_options(tmp_path):
    summary, out = train(
        tmp_path,
        "sal",
        "--model",
        "salient_resnet18",
        "--cifar-stem",
        "--img-size",
        "8",
        "--epochs",
        "2",
        "--opt",
        "adamw",
        "--lr",
        "0.002",
        "--sched",
        "step",
        "--decay-epochs",
        "1",
    )
    rows = history(out)
    assert rows[1]["lr"] == pytest.approx(rows[0]["lr"] * 0.1)
    assert summary["last_top1"] > 50


@pytest.mark.slow  # two training runs, about 14 s: the slow step runs it
def test_retrofit_starts_at_base_accuracy_and_fine_tunes(base_run, tmp_path):
    base_summary, base_out = base_run
    summary, out = train(
        tmp_path,
        "retro",
        "--model",
        "resnet18",
        "--attn",
        "salient",
        "--attn-init-gain",
        "0",
        "--pretrained-path",
        str(base_out / "last.pth"),
        "--epochs",
        "2",
        "--lr",
        "0.005",
    )
    assert summary["initial_top1"] == pytest.approx(base_summary["last_top1"], abs=1e-9)
    assert json.loads((out / "initial_eval.json").read_text())["test_top1"] == summary["initial_top1"]
    assert summary["last_top1"] >= base_summary["last_top1"] - 1.0
    state = torch.load(out / "last.pth", weights_only=True)["model"]
    assert state["layer1.0.se.gate.scale"].item() == 2.0


@pytest.mark.slow
def test_resume_after_kill_mid_epoch_gives_identical_metrics(tmp_path):
    args = ["--model", "resnet18", "--attn", "ssa", "--epochs", "3", *FAST]
    full = tmp_path / "full"
    subprocess.run([str(BIN / "salient-train"), *args, "--out", str(full)], check=True, capture_output=True)
    killed = tmp_path / "killed"
    proc = subprocess.Popen(
        [str(BIN / "salient-train"), *args, "--out", str(killed)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.time() + 120
    while not (killed / "metrics.json").exists() and time.time() < deadline:
        time.sleep(0.1)
    time.sleep(0.3)  # into epoch 2
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = len(history(killed))
    assert 1 <= done < 3, "the run was not killed mid-way"
    assert not list(killed.glob(".tmp-*")), "a partial checkpoint was left behind"
    result = subprocess.run(
        [str(BIN / "salient-train"), "--resume", str(killed), "--no-progress"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert f"resuming {killed} after epoch {done}" in result.stdout
    keys = ("train_loss", "train_top1", "test_loss", "test_top1", "test_top5", "lr")
    assert [[r[k] for k in keys] for r in history(killed)] == [[r[k] for k in keys] for r in history(full)]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_ddp_two_processes_match_single_process(tmp_path):
    args = ["--model", "resnet18", "--attn", "salient", "--epochs", "1", "--freeze-bn", "--batch-size", "64", *FAST]
    single = tmp_path / "single"
    run(parse_args([*args, "--out", str(single)]))
    ddp = tmp_path / "ddp"
    env = {k: v for k, v in os.environ.items() if k not in ("WORLD_SIZE", "RANK", "LOCAL_RANK")}
    result = subprocess.run(
        [
            str(BIN / "torchrun"),
            "--nproc-per-node",
            "2",
            "--master-port",
            str(_free_port()),
            "-m",
            "salient_timm.train",
            *args,
            "--out",
            str(ddp),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=1200,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "2 process(es) on cpu" in result.stdout
    a, b = history(single)[0], history(ddp)[0]
    for key in ("train_loss", "test_loss"):
        assert b[key] == pytest.approx(a[key], rel=1e-5)
    assert b["test_top1"] == pytest.approx(a["test_top1"], abs=0.3)  # one test image of 360
    wa = torch.load(single / "last.pth", weights_only=True)["model"]
    wb = torch.load(ddp / "last.pth", weights_only=True)["model"]
    assert max((wa[k].float() - wb[k].float()).abs().max().item() for k in wa) < 1e-5


@pytest.mark.parametrize("dataset, classes", [("cifar10", 10), ("cifar100", 100)])
def test_cifar_folders_with_the_seed_recipe(tmp_path, dataset, classes):
    write_fake_cifar(tmp_path / "data", classes)
    summary, out = train(
        tmp_path,
        dataset,
        "--model",
        "resnet18",
        "--cifar-stem",
        "--dataset",
        dataset,
        "--data-dir",
        str(tmp_path / "data"),
        "--recipe",
        "seed-cifar",
        "--epochs",
        "1",
        "--img-size",
        "32",
    )
    args = json.loads((out / "args.json").read_text())
    assert (args["batch_size"], args["lr"], args["decay_epochs"], args["augment"]) == (100, 0.1, 50, True)
    state = torch.load(out / "last.pth", weights_only=True)
    assert state["model"]["fc.weight"].shape[0] == classes


def test_cifar_missing_without_download_names_the_fix(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--model", "resnet18", "--dataset", "cifar10", "--data-dir", str(tmp_path), "--out", str(tmp_path / "r")])
    assert exit_.value.code == 1
    assert "pass --download to fetch it" in capsys.readouterr().err


def test_fashion_mnist_idx_files(tmp_path):
    rng = np.random.default_rng(0)
    folder = tmp_path / "fm"
    folder.mkdir()
    for prefix, n in (("train", 128), ("t10k", 40)):
        write_idx(folder / f"{prefix}-images-idx3-ubyte.gz", rng.integers(0, 256, (n, 28, 28)))
        write_idx(folder / f"{prefix}-labels-idx1-ubyte.gz", rng.integers(0, 10, n))
    assert read_idx(str(folder / "t10k-labels-idx1-ubyte.gz")).shape == (40,)
    summary, out = train(
        tmp_path,
        "fm",
        "--model",
        "resnet18",
        "--dataset",
        "fashion-mnist",
        "--data-dir",
        str(folder),
        "--epochs",
        "1",
        "--img-size",
        "28",
    )
    assert summary["epochs"] == 1


def test_truncated_idx_file_is_reported(tmp_path):
    path = tmp_path / "bad-idx"
    path.write_bytes(bytes([0, 0, 8, 1]) + (100).to_bytes(4, "big") + b"\x01" * 10)
    with pytest.raises(DatasetError, match="header says \\[100\\], file holds 10 values"):
        read_idx(str(path))


def test_imagefolder_tree(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    for split, n in (("train", 8), ("val", 4)):
        for cls in ("cat", "dog"):
            (tmp_path / "imgs" / split / cls).mkdir(parents=True)
            for i in range(n):
                Image.fromarray(rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)).save(
                    tmp_path / "imgs" / split / cls / f"{i}.png"
                )
    summary, out = train(
        tmp_path,
        "if",
        "--model",
        "resnet18",
        "--dataset",
        "imagefolder",
        "--data-dir",
        str(tmp_path / "imgs"),
        "--img-size",
        "32",
        "--epochs",
        "1",
        "--batch-size",
        "8",
    )
    assert torch.load(out / "best.pth", weights_only=True)["model"]["fc.weight"].shape[0] == 2
    assert summary["epochs"] == 1 and 0 <= summary["last_top1"] <= 100  # evaluated on the 8 val images
    assert json.loads((out / "args.json").read_text())["class_names"] == ["cat", "dog"]


@pytest.mark.parametrize(
    "content, message", [(b"not a checkpoint", "not a torch.save or safetensors weights file"), (None, "missing")]
)
def test_resume_from_corrupt_or_foreign_checkpoint(base_run, tmp_path, capsys, content, message):
    _, base_out = base_run
    run_dir = tmp_path / "copy"
    run_dir.mkdir()
    (run_dir / "args.json").write_text((base_out / "args.json").read_text())
    if content is None:
        torch.save({"model": {}}, run_dir / "last.pth")
    else:
        (run_dir / "last.pth").write_bytes(content)
    with pytest.raises(SystemExit) as exit_:
        main(["--resume", str(run_dir), "--no-progress"])
    assert exit_.value.code == 1 and message in capsys.readouterr().err


def test_resume_with_a_checkpoint_of_another_model(base_run, tmp_path, capsys):
    _, base_out = base_run
    run_dir = tmp_path / "other"
    run_dir.mkdir()
    args = json.loads((base_out / "args.json").read_text())
    (run_dir / "args.json").write_text(json.dumps({**args, "model": "resnet26", "out": str(run_dir)}))
    (run_dir / "last.pth").write_bytes((base_out / "last.pth").read_bytes())
    with pytest.raises(SystemExit):
        main(["--resume", str(run_dir), "--no-progress"])
    assert "does not match this model/optimizer" in capsys.readouterr().err
    assert load_checkpoint(str(base_out / "last.pth"))["epoch"] == 2


@pytest.mark.parametrize(
    "argv, code, message",
    [
        (["--model", "resnet18", "--dataset", "mnist", "--out", "x"], 2, "'mnist' is not one of 'digits'"),
        (["--dataset", "digits", "--out", "x"], 2, "missing option(s) --model (required unless --resume"),
        (
            ["--model", "resnet18", "--dataset", "digits", "--out", "x", "--epochs", "0"],
            2,
            "0 is not in the range x>=1",
        ),
        (
            ["--model", "resnet18", "--dataset", "digits", "--out", "x", "--lr", "nan"],
            2,
            "--lr must be a finite number",
        ),
        (
            ["--model", "resnet18", "--dataset", "digits", "--out", "x", "--attn-init-gain", "0.1"],
            2,
            "--attn-init-gain applies to a retrofit",
        ),
        (["--model", "resnet18", "--dataset", "digits", "--out", "x", "--attn", "salinet"], 1, "did you mean salient"),
        (
            ["--model", "resnet18", "--dataset", "digits", "--out", "x", "--pretrained-path", "nope/w.pth"],
            2,
            "--pretrained-path nope/w.pth: no such file",
        ),
        (["--resume", "/nonexistent-run"], 2, "no such folder; give the run folder salient-train wrote"),
    ],
)
def test_bad_arguments(tmp_path, capsys, monkeypatch, argv, code, message):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_:
        main(argv + ["--no-progress"] if "--resume" not in argv else argv)
    assert exit_.value.code == code
    assert message in capsys.readouterr().err


def test_existing_run_folder_is_not_overwritten(base_run, capsys):
    _, base_out = base_run
    with pytest.raises(SystemExit):
        main(["--model", "resnet18", "--out", str(base_out), *FAST])
    assert "already holds a run; continue it with --resume" in capsys.readouterr().err


def _lrs(out):
    return [r["lr"] for r in history(out)]


@pytest.mark.slow  # two training runs, about 13 s: the slow step runs it
def test_resume_extends_the_schedule_without_rereading_pretrained_and_honours_new_flags(base_run, tmp_path, capsys):
    _, base_out = base_run
    weights = tmp_path / "base.pth"
    weights.write_bytes((base_out / "last.pth").read_bytes())
    out = tmp_path / "retro"
    run(
        parse_args(
            [
                "--model",
                "resnet18",
                "--attn",
                "salient",
                "--pretrained-path",
                str(weights),
                "--epochs",
                "1",
                "--dataset",
                "digits",
                "--img-size",
                "16",
                "--output",
                str(out),
            ]
        )
    )
    assert "epoch 1/1" in capsys.readouterr().err  # the progress bar
    before = torch.load(out / "last.pth", weights_only=True)["model"]
    weights.unlink()  # the checkpoint holds every weight: resume must not need the pretrained file
    main(["--resume", str(out), "--epochs", "2", "--no-progress"], standalone_mode=False)
    printed = capsys.readouterr()
    assert "extended from 1 to 2 epochs" in printed.out and "epoch 2/2" not in printed.err  # --no-progress taken
    lrs = _lrs(out)
    assert lrs == [pytest.approx(0.05), pytest.approx(0.025)]  # cosine over 2 epochs, not a dead lr of 0
    after = torch.load(out / "last.pth", weights_only=True)["model"]
    assert not torch.equal(before["layer1.0.se.conv.weight"], after["layer1.0.se.conv.weight"])
    saved = json.loads((out / "args.json").read_text())
    assert saved["epochs"] == 2 and saved["resumes"] == [{"after_epoch": 1, "epochs_before": 1, "epochs": 2}]
    assert "epochs_given" not in saved


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--epochs", "3"], "has already done 3 epochs; ask for more than 3"),
        (["--lr", "0.2"], "these differ: --lr 0.2 (run: 0.05)"),
    ],
)
def test_resume_refuses_what_it_cannot_honour(base_run, tmp_path, capsys, extra, message):
    _, base_out = base_run
    with pytest.raises(SystemExit) as exit_:
        main(["--resume", str(base_out), *extra])
    assert exit_.value.code == 2 and message in capsys.readouterr().err
    assert len(history(base_out)) == 3


def test_resume_takes_a_checkpoint_inside_the_run_folder_as_timm_users_type_it(base_run):
    _, base_out = base_run
    for given in (base_out / "last.pth", base_out / "best.pth"):
        args = parse_args(["--resume", str(given), "--epochs", "4"])
        assert args.out == str(base_out) and args.epochs == 4


@pytest.mark.parametrize(
    "where, message",
    [("missing", "no such folder; give the run folder salient-train wrote"), ("empty", "no args.json there; give")],
)
def test_resume_of_something_else_says_what_to_give(tmp_path, capsys, where, message):
    target = tmp_path / where
    if where == "empty":
        target.mkdir()
    with pytest.raises(SystemExit) as exit_:
        main(["--resume", str(target)])
    assert exit_.value.code == 2 and message in capsys.readouterr().err


def test_both_tools_take_torchvision_bases_and_name_close_ones():
    from salient_timm.train.config import TrainConfigError, check_model_name

    assert check_model_name("torchvision:resnet50") == "torchvision:resnet50"
    with pytest.raises(TrainConfigError, match="did you mean torchvision:resnet50"):
        check_model_name("torchvision:resnet05")
    from click.testing import CliRunner

    from salient_analysis.cli import main as analyze

    result = CliRunner().invoke(analyze, ["params", "-m", "torchvision:resnet18", "--attn", "salient", "-f", "json"])
    assert result.exit_code == 0, result.output  # before: "unknown model ... did you mean cspresnet50"


def test_step0_with_a_new_head_is_labelled_as_such_and_the_run_names_its_attention(base_run, tmp_path, capsys):
    _, base_out = base_run
    summary, out = train(
        tmp_path,
        "newhead",
        "--model",
        "resnet18",
        "--attn",
        "se",
        "--num-classes",
        "12",
        "--pretrained-path",
        str(base_out / "last.pth"),
        "--epochs",
        "1",
    )
    printed = capsys.readouterr()
    assert (
        "step 0 (pretrained backbone, new 12-class head (untrained: about chance; the checkpoint's head had "
        "10 classes))" in printed.out
    )
    assert "pretrained accuracy" not in printed.out
    assert "done: resnet18+se (retrofit) on digits" in printed.out
    assert "retrofit: se starts at init gain 0.1; its parameters train at lr x100, weight decay 0" in printed.out
    assert "the last stage sees 1x1 feature maps at 16 px" in printed.err  # ImageNet stem at 16 px: warned
    assert json.loads((out / "initial_eval.json").read_text())["label"].startswith("pretrained backbone, new 12-class")


def test_tiny_final_feature_maps_are_detected():
    import timm

    from salient_timm import convert_to_cifar_stem
    from salient_timm.train.model import final_feature_size

    assert final_feature_size(timm.create_model("resnet50"), 16) == 1
    assert final_feature_size(timm.create_model("resnet50"), 224) == 7
    assert final_feature_size(convert_to_cifar_stem(timm.create_model("resnet50")), 16) == 2


def test_help_and_version():
    from click.testing import CliRunner

    from salient_timm import __version__

    result = CliRunner().invoke(main, ["--help"])
    assert result.exit_code == 0
    for option in (
        "-m, --model",
        "-b, --batch-size",
        "--img-size",
        "--num-classes",
        "--pretrained-path",
        "--resume",
        "--attn-lr-scale",
        "--attn-init-gain",
        "--attn-weight-decay",
        "--cifar-stem",
        "--position",
    ):
        assert option in result.output
    assert "[required unless --resume]" in result.output and "default:" in result.output
    assert CliRunner().invoke(main, ["--version"]).output.strip().endswith(__version__)
