"""Command-line options and recipes for salient-train.

A recipe fills defaults; options given on the command line win over the recipe.
"""
import argparse
import json
import os
from typing import Any, Dict, List, Optional

__all__ = ["RECIPES", "DATASETS", "build_parser", "parse_args", "TrainConfigError"]

DATASETS = ("digits", "fashion-mnist", "cifar10", "cifar100", "imagefolder")

RECIPES: Dict[str, Dict[str, Any]] = {
    # The seed's CIFAR recipe: batch 100, SGD lr 0.1 (momentum 0.9), lr /10 every 50 epochs, 240 epochs.
    # The seed states neither weight decay nor augmentation; we use the usual CIFAR choices:
    # weight decay 5e-4, random crop 32 with 4px padding, horizontal flip.
    "seed-cifar": dict(batch_size=100, opt="sgd", lr=0.1, momentum=0.9, weight_decay=5e-4, sched="step",
                       decay_epochs=50, decay_rate=0.1, epochs=240, warmup_epochs=0, augment=True, img_size=32),
}

# Defaults when neither the command line nor a recipe says otherwise.
DEFAULTS: Dict[str, Any] = dict(
    epochs=10, batch_size=64, opt="sgd", lr=0.05, momentum=0.9, weight_decay=5e-4, sched="cosine",
    decay_epochs=30, decay_rate=0.1, warmup_epochs=0, augment=None, img_size=None, label_smoothing=0.0,
)


class TrainConfigError(ValueError):
    """Bad or inconsistent training options."""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="salient-train",
        description="Train or fine-tune a timm ResNet, optionally retrofitted with attention. "
                    "Launch with torchrun for several processes (DDP; NCCL on GPU, gloo on CPU).",
    )
    g = p.add_argument_group("model")
    g.add_argument("--model", help="any timm model name, salient_*/ssa_* included")
    g.add_argument("--attn", default="none", help="attention to inject: salient, ssa, se, eca, cbam, ... (default none)")
    g.add_argument("--position", default="post", choices=["post", "mid"])
    g.add_argument("--pretrained", default=None,
                   help="a local checkpoint file (safetensors / torch.save, e.g. a salient-train best.pth) "
                        "or a timm pretrained tag (downloads); retrofitted attention then starts as the identity")
    g.add_argument("--cifar-stem", action="store_true", help="3x3 stride-1 stem without max-pool (32x32 inputs)")
    g.add_argument("--freeze-bn", action="store_true", help="freeze every BatchNorm (statistics and affine)")
    g = p.add_argument_group("data")
    g.add_argument("--dataset", choices=DATASETS, help="digits needs no download (scikit-learn's 8x8 digits)")
    g.add_argument("--data-dir", default=None, help="dataset root (fashion-mnist: idx files; imagefolder: train/ and val/)")
    g.add_argument("--download", action="store_true", help="allow downloading CIFAR into --data-dir")
    g.add_argument("--img-size", type=int, default=None, help="input size (default: 16 digits, 28 fashion-mnist, 32 cifar, 224 imagefolder)")
    g.add_argument("--augment", action=argparse.BooleanOptionalAction, default=None,
                   help="training augmentation (default: on for cifar/imagefolder, off for digits/fashion-mnist)")
    g.add_argument("--workers", type=int, default=0)
    g = p.add_argument_group("optimisation")
    g.add_argument("--recipe", choices=sorted(RECIPES), help="preset: " + "; ".join(
        f"{k}: " + ", ".join(f"{a}={b}" for a, b in v.items()) for k, v in RECIPES.items()))
    g.add_argument("--epochs", type=int)
    g.add_argument("--batch-size", type=int, help="global batch (split across processes)")
    g.add_argument("--opt", help="timm optimizer name (sgd, adamw, ...)")
    g.add_argument("--lr", type=float)
    g.add_argument("--momentum", type=float)
    g.add_argument("--weight-decay", type=float)
    g.add_argument("--sched", help="timm scheduler name (step, cosine, ...)")
    g.add_argument("--decay-epochs", type=float, help="step scheduler: epochs between decays")
    g.add_argument("--decay-rate", type=float)
    g.add_argument("--warmup-epochs", type=int)
    g.add_argument("--label-smoothing", type=float)
    g = p.add_argument_group("run")
    g.add_argument("--out", help="run folder: checkpoints, metrics.csv/json, curves.png")
    g.add_argument("--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR from its last checkpoint")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--device", default=None, help="cpu, cuda, cuda:1 (default: cuda when available)")
    g.add_argument("--amp", action=argparse.BooleanOptionalAction, default=None, help="bf16 autocast (default: on with CUDA)")
    g.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=None, help="default: on with CUDA")
    g.add_argument("--compile", action="store_true", help="torch.compile the model")
    g.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def _finalise(args: argparse.Namespace) -> argparse.Namespace:
    recipe = RECIPES.get(args.recipe or "", {})
    for key, default in DEFAULTS.items():
        if getattr(args, key, None) is None:
            setattr(args, key, recipe.get(key, default))
    if args.img_size is None:
        args.img_size = {"digits": 16, "fashion-mnist": 28, "cifar10": 32, "cifar100": 32}.get(args.dataset, 224)
    if args.augment is None:
        args.augment = args.dataset in ("cifar10", "cifar100", "imagefolder")
    for name in ("epochs", "batch_size", "img_size"):
        if getattr(args, name) < 1:
            raise TrainConfigError(f"--{name.replace('_', '-')} must be a positive integer, got {getattr(args, name)}")
    if args.lr <= 0:
        raise TrainConfigError(f"--lr must be positive, got {args.lr}")
    return args


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    """Parse options; with ``--resume RUN_DIR`` the run's saved options are used (``--epochs`` may extend it)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.resume:
        saved = os.path.join(args.resume, "args.json")
        if not os.path.isfile(saved):
            raise TrainConfigError(f"--resume {args.resume}: no args.json there (not a salient-train run folder)")
        with open(saved) as f:
            stored = json.load(f)
        extend, run_dir = args.epochs, args.resume
        args = argparse.Namespace(**{**vars(parser.parse_args([])), **stored})
        args.resume = args.out = run_dir
        if extend:
            args.epochs = extend
        return args
    missing = [opt for opt, val in (("--model", args.model), ("--dataset", args.dataset), ("--out", args.out)) if not val]
    if missing:
        parser.error(f"the following arguments are required: {', '.join(missing)}")
    return _finalise(args)
