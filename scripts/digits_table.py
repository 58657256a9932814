"""Evidence on real data: resnet18, seresnet18 and salient_resnet18 (all with the CIFAR stem), 3 seeds each.

    python scripts/digits_table.py                       # digits on CPU (scikit-learn's real 8x8 digits)
    python scripts/digits_table.py --dataset fashion-mnist --epochs 10 --img-size 28   # on a CUDA GPU

Writes a markdown table of mean ± std test top-1 (best epoch and last epoch) with device, versions
and wall time to --out (default results/<dataset>.md). Digits settings, chosen to finish in under
30 minutes on a 2-core CPU: 16x16 inputs (8x8 upsampled), CIFAR stem, 12 epochs, batch 64,
SGD lr 0.05 momentum 0.9 wd 5e-4, cosine schedule, no augmentation; split 1437 train / 360 test.
"""

import argparse
import datetime
import os
import platform
import statistics
import sys
import time

import timm
import torch

from salient_timm import convert_to_cifar_stem
from salient_timm.train.cli import parse_args, run

MODELS = (("resnet18", "none"), ("seresnet18", "none"), ("salient_resnet18", "none"))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", default="digits", choices=["digits", "fashion-mnist"])
    p.add_argument("--data-dir", default=None)
    p.add_argument("--epochs", type=int, default=12)
    p.add_argument("--img-size", type=int, default=16)
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--runs-dir", default="runs/evidence")
    p.add_argument("--out", default=None)
    a = p.parse_args()
    out = a.out or os.path.join("results", f"{a.dataset}.md")
    started = time.perf_counter()
    results = {}
    for model, attn in MODELS:
        for seed in range(a.seeds):
            run_dir = os.path.join(a.runs_dir, a.dataset, f"{model}-s{seed}")
            argv = [
                "--model",
                model,
                "--attn",
                attn,
                "--cifar-stem",
                "--dataset",
                a.dataset,
                "--epochs",
                str(a.epochs),
                "--img-size",
                str(a.img_size),
                "--seed",
                str(seed),
                "--out",
                run_dir,
                "--no-channels-last",
                "--no-progress",
            ]
            if a.data_dir:
                argv += ["--data-dir", a.data_dir]
            if os.path.exists(os.path.join(run_dir, "last.pth")):
                argv = ["--resume", run_dir, "--no-progress"]  # finished runs return at once
            t0 = time.perf_counter()
            summary = run(parse_args(argv))
            results.setdefault(model, []).append((summary["best_top1"], summary["last_top1"], time.perf_counter() - t0))
            print(
                f"== {model} seed {seed}: best {summary['best_top1']:.2f} last {summary['last_top1']:.2f}", flush=True
            )
    wall = time.perf_counter() - started
    device = (
        torch.cuda.get_device_name()
        if torch.cuda.is_available()
        else f"CPU ({platform.machine()}, {torch.get_num_threads()} threads)"
    )
    lines = [
        f"# {a.dataset}: test top-1 over {a.seeds} seeds",
        "",
        f"- date {datetime.date.today()}, device {device}, torch {torch.__version__}, timm {timm.__version__}, "
        f"Python {sys.version.split()[0]}",
        f"- settings: CIFAR stem, {a.img_size}x{a.img_size} input, {a.epochs} epochs, batch 64, SGD lr 0.05 "
        "momentum 0.9 wd 5e-4, cosine, no augmentation; `python scripts/digits_table.py"
        + (f" --dataset {a.dataset}" if a.dataset != "digits" else "")
        + "`",
        f"- wall time for all {len(MODELS) * a.seeds} runs: {wall / 60:.1f} min",
        "",
        "| model | params | best-epoch top-1 (mean ± std) | last-epoch top-1 (mean ± std) | min last | s/run |",
        "|---|---|---|---|---|---|",
    ]
    for model, rows in results.items():
        best, last, secs = zip(*rows)
        net = convert_to_cifar_stem(timm.create_model(model, num_classes=10, in_chans=1))
        n_params = sum(p.numel() for p in net.parameters())
        lines.append(
            f"| {model} | {n_params:,} | {statistics.mean(best):.2f} ± "
            f"{statistics.stdev(best) if len(best) > 1 else 0:.2f} "
            f"| {statistics.mean(last):.2f} ± {statistics.stdev(last) if len(last) > 1 else 0:.2f} | {min(last):.2f} "
            f"| {statistics.mean(secs):.0f} |"
        )
    os.makedirs(os.path.dirname(out) or ".", exist_ok=True)
    with open(out, "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
