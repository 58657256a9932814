"""Bad and edge inputs to salient-train and salient-analyze, as a new user would type them.

    python scripts/fuzz_cli.py            # prints one line per case and the counts

Each case runs in-process (click's CliRunner) and is classified:
- clean: non-zero exit with a short message and no traceback (or exit 0 where the input is valid);
- traceback: an exception escaped the CLI;
- silent: the command accepted input it should have refused (exit 0 where an error was expected).
Kill and concurrency scenarios are in tests/test_robustness.py (they need real processes).
"""

import os
import sys
import tempfile
import traceback
from typing import List, Tuple

import timm
import torch
from click.testing import CliRunner
from safetensors.torch import save_file

from salient_analysis.cli import main as analyze
from salient_timm.train.cli import main as train

TRAIN = [
    "--model",
    "resnet18",
    "--dataset",
    "digits",
    "--epochs",
    "1",
    "-b",
    "64",
    "--cifar-stem",
    "--no-progress",
    "--device",
    "cpu",
]


def _files(tmp: str) -> dict:
    paths = {}
    for name, data in {"garbage.pth": b"not a checkpoint at all", "empty.pth": b"", "truncated.pth": None}.items():
        path = os.path.join(tmp, name)
        with open(path, "wb") as f:
            if data is None:
                buf = tempfile.SpooledTemporaryFile()
                torch.save({"model": {"w": torch.zeros(100)}}, buf)
                buf.seek(0)
                f.write(buf.read()[:200])
            else:
                f.write(data)
        paths[name] = path
    for name, obj in {"list.pth": [1, 2, 3], "tensor.pth": torch.zeros(3), "string.pth": "hello"}.items():
        paths[name] = os.path.join(tmp, name)
        torch.save(obj, paths[name])
    paths["refused.pth"] = os.path.join(tmp, "refused.pth")
    torch.save({"model": {"f": os.system}}, paths["refused.pth"])  # a pickle weights_only loading refuses
    paths["r18.safetensors"] = os.path.join(tmp, "r18.safetensors")  # ImageNet-shaped resnet18 weights (random)
    save_file(timm.create_model("resnet18").state_dict(), paths["r18.safetensors"])
    paths["file"] = os.path.join(tmp, "a_file")
    open(paths["file"], "w").close()
    return paths


def cases(tmp: str) -> List[Tuple[str, object, List[str], bool]]:
    """(name, command, args, should_fail)."""
    f = _files(tmp)
    out = lambda name: os.path.join(tmp, name)  # noqa: E731
    c: List[Tuple[str, object, List[str], bool]] = []
    for name in ("garbage.pth", "empty.pth", "truncated.pth", "list.pth", "tensor.pth", "string.pth", "refused.pth"):
        c.append(
            (
                f"train --pretrained-path {name}",
                train,
                TRAIN + ["--out", out(f"p-{name}"), "--pretrained-path", f[name]],
                True,
            )
        )
    c += [
        ("train unknown --model", train, ["--model", "resnet5O", "--dataset", "digits", "--out", out("m")], True),
        ("train --opt bogus", train, TRAIN + ["--out", out("o1"), "--opt", "bogus"], True),
        ("train --sched bogus", train, TRAIN + ["--out", out("o2"), "--sched", "bogus"], True),
        ("train --momentum -1", train, TRAIN + ["--out", out("o3"), "--momentum", "-1"], True),
        ("train --workers -1", train, TRAIN + ["--out", out("o4"), "--workers", "-1"], True),
        ("train --label-smoothing 2", train, TRAIN + ["--out", out("o5"), "--label-smoothing", "2"], True),
        ("train --device bogus", train, TRAIN[:-2] + ["--out", out("o6"), "--device", "bogus"], True),
        ("train --lr nan", train, TRAIN + ["--out", out("o8"), "--lr", "nan"], True),
        ("train --lr inf", train, TRAIN + ["--out", out("o9"), "--lr", "inf"], True),
        ("train --lr -1", train, TRAIN + ["--out", out("o10"), "--lr", "-1"], True),
        ("train --weight-decay -1", train, TRAIN + ["--out", out("o11"), "--weight-decay", "-1"], True),
        ("train --weight-decay nan", train, TRAIN + ["--out", out("o12"), "--weight-decay", "nan"], True),
        ("train --momentum inf", train, TRAIN + ["--out", out("o13"), "--momentum", "inf"], True),
        ("train --decay-rate nan", train, TRAIN + ["--out", out("o14"), "--decay-rate", "nan"], True),
        ("train --attn-lr-scale nan", train, TRAIN + ["--out", out("o15"), "--attn-lr-scale", "nan"], True),
        ("train --out is a file", train, TRAIN + ["--out", f["file"]], True),
        ("train --attn halo", train, TRAIN + ["--out", out("o16"), "--attn", "halo"], True),
        ("train --attn ge", train, TRAIN + ["--out", out("o17"), "--attn", "ge"], True),
        ("train --attn bogus", train, TRAIN + ["--out", out("o18"), "--attn", "bogus"], True),
        ("train --epochs 0", train, TRAIN[:4] + ["--epochs", "0", "--out", out("o19")], True),
        ("train --resume missing", train, ["--resume", out("nothing-here")], True),
        ("train --resume a file", train, ["--resume", f["file"]], True),
        ("train --dataset bogus", train, ["--model", "resnet18", "--dataset", "bogus", "--out", out("o20")], True),
        ("train --img-size 0", train, TRAIN + ["--out", out("o21"), "--img-size", "0"], True),
        ("train --batch-size 0", train, TRAIN + ["--out", out("o22"), "-b", "0"], True),
        ("train --num-classes 3 (< 10)", train, TRAIN + ["--out", out("o23"), "--num-classes", "3"], True),
        ("train --position bogus", train, TRAIN + ["--out", out("o24"), "--position", "bogus"], True),
        (
            "train --device cuda without a GPU",
            train,
            TRAIN[:-2] + ["--out", out("o26"), "--device", "cuda"],
            not torch.cuda.is_available(),
        ),
        ("train --device cuda:99", train, TRAIN[:-2] + ["--out", out("o27"), "--device", "cuda:99"], True),
        ("train --resume R --epochs -4", train, ["--resume", out("o28"), "--epochs", "-4"], True),
        ("train --opt SGDD (close match)", train, TRAIN + ["--out", out("o29"), "--opt", "sgdd"], True),
        ("train --warmup-epochs -1", train, TRAIN + ["--out", out("o30"), "--warmup-epochs", "-1"], True),
        ("train --decay-epochs 0", train, TRAIN + ["--out", out("o31"), "--decay-epochs", "0"], True),
        (
            "train -b 1 on a 1x1 map",
            train,
            ["--model", "salient_resnet18", "--dataset", "digits", "--img-size", "16", "-b", "1", "--out", out("b1")],
            True,
        ),
        (
            "train -b 1 at 32 px, no CIFAR stem",
            train,
            TRAIN[:-5] + ["-b", "1", "--img-size", "32", "--out", out("b2")],
            True,
        ),
        (
            "train --attn se retrofit --export-hf",
            train,
            TRAIN
            + ["--out", out("se"), "--attn", "se", "--pretrained-path", f["r18.safetensors"]]
            + ["--export-hf", out("se-hf")],
            False,
        ),
        (
            "train --pretrained-path missing.pth",
            train,
            TRAIN + ["--out", out("o25"), "--pretrained-path", out("missing.pth")],
            True,
        ),
    ]
    for size in ("7x", "x7", ",32,", "0", "-3", "3x0x32", "abc", "32x32x32x32"):
        c.append((f"analyze params -s {size}", analyze, ["params", "-m", "resnet18", "-s", size], True))
    c += [
        (
            "analyze flops halo -s 30",
            analyze,
            ["flops", "-m", "resnet26", "-a", "halo", "-s", "30", "--no-crosscheck"],
            True,
        ),
        (
            "analyze flops bat -s 30",
            analyze,
            ["flops", "-m", "resnet26", "-a", "bat", "-s", "30", "--no-crosscheck"],
            True,
        ),
        ("analyze vit model", analyze, ["flops", "-m", "vit_tiny_patch16_224", "-a", "salient", "-s", "32"], True),
        ("analyze unknown model", analyze, ["params", "-m", "resnet5O"], True),
        ("analyze unknown attn", analyze, ["params", "-m", "resnet18", "-a", "bogus"], True),
        ("analyze attn ge", analyze, ["params", "-m", "resnet18", "-a", "ge"], True),
        ("analyze -s 99999 flops", analyze, ["flops", "-m", "resnet18", "-s", "99999"], False),
        ("analyze -b 100000000 flops", analyze, ["flops", "-m", "resnet18", "-s", "32", "-b", "100000000"], False),
        (
            "analyze maps --out nodir",
            analyze,
            ["maps", "-m", "salient_resnet18", "-i", f["file"], "--out", out("nodir/sub/x.png")],
            True,
        ),
        (
            "analyze maps corrupt checkpoint",
            analyze,
            ["maps", "-m", "salient_resnet18", "-c", f["garbage.pth"], "-i", f["file"]],
            True,
        ),
        ("analyze maps corrupt checkpoint, no model", analyze, ["maps", "-c", f["garbage.pth"], "-i", f["file"]], True),
        ("analyze profile --device bogus", analyze, ["profile", "-m", "resnet18", "--device", "bogus"], True),
        ("analyze compare empty", analyze, ["compare", "-m", ",", "-a", "none"], True),
    ]
    # block families and norm layers: every model is valid input; a refusal must be one clean line, never a crash
    for model, position, fails in (
        ("resnet50_gn", "post", False),  # GroupNorm: no num_features
        ("resnetv2_50x1_bit", "mid", False),  # pre-activation, GroupNormAct + weight-standardised convs
        ("nf_resnet26", "post", False),  # no norm at all
        ("regnetx_002", "post", False),
        ("dla34", "mid", False),
        ("torchvision:resnet18", "post", False),
        ("legacy_seresnet18", "post", True),  # its own SE holds the post slot
        ("repvgg_a0", "post", True),  # a block that takes no attention
    ):
        args = ["params", "-m", model, "-a", "salient", "--position", position, "--attn-stages", "1,2"]
        c.append((f"analyze {model} salient@{position}", analyze, args, fails))
    return c


def classify(command, args: List[str], should_fail: bool) -> Tuple[str, str]:
    result = CliRunner().invoke(command, args)
    text = (result.output or "").strip().splitlines()
    last = text[-1] if text else ""
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        tb = "".join(traceback.format_exception(result.exception)).strip().splitlines()[-1]
        return "traceback", tb[:160]
    if should_fail and result.exit_code == 0:
        return "silent", last[:160]
    if not should_fail and result.exit_code != 0:
        return "refused valid input", last[:160]
    return "clean", last[:160]


def main() -> int:
    counts = {"clean": 0, "traceback": 0, "silent": 0, "refused valid input": 0}
    with tempfile.TemporaryDirectory() as tmp:
        for name, command, args, should_fail in cases(tmp):
            verdict, text = classify(command, args, should_fail)
            counts[verdict] += 1
            print(f"{verdict:20s} {name:45s} {text}", flush=True)
    print(f"\ntried {sum(counts.values())}: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    return 0 if counts["clean"] == sum(counts.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
