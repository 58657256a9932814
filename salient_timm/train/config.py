"""salient-train's option values: recipes, defaults, the checks a fresh run's options pass, and what they mean
(the weights, the run's label, the data items).

Option values resolve in this order: the command line, then ``--recipe``, then ``DEFAULTS``. The click option
table is ``salient_timm.train.options``; a resumed run's options, ``salient_timm.train.resume``.
"""

import argparse
import ast
import difflib
import math
import os
from typing import Any, Dict, Optional, Sequence

import timm

from ..data import DATASET_NAMES, ITEM_SIZE, ItemOptions
from ..errors import SalientError
from ..layers.create_attn import resolve_attention
from ..optim import retrofit_defaults
from ..spec import ModelSpec, ModelSpecError
from ..spec import check_model_name as check

__all__ = [
    "RECIPES",
    "DATASETS",
    "DEFAULTS",
    "TrainConfigError",
    "is_retrofit",
    "run_label",
    "weights_source",
    "item_options",
    "parse_model_kwargs",
    "finalise",
    "IMG_SIZE",
]

DATASETS = DATASET_NAMES
IMG_SIZE = {
    "digits": 16,
    "fashion-mnist": 28,
    "cluttered-fashion-mnist": 64,
    "cifar10": 32,
    "cifar100": 32,
    "imagefolder": 224,
}
CANVAS_DATASETS = ("fashion-mnist", "cluttered-fashion-mnist")  # --canvas: the items are 28x28

RECIPES: Dict[str, Dict[str, Any]] = {
    # The seed's CIFAR recipe: batch 100, SGD lr 0.1 (momentum 0.9), lr /10 every 50 epochs, 240 epochs.
    # The seed states neither weight decay nor augmentation; we use the usual CIFAR choices:
    # weight decay 5e-4, random crop 32 with 4px padding, horizontal flip.
    "seed-cifar": dict(
        batch_size=100,
        opt="sgd",
        lr=0.1,
        momentum=0.9,
        weight_decay=5e-4,
        sched="step",
        decay_epochs=50,
        decay_rate=0.1,
        epochs=240,
        warmup_epochs=0,
        augment=True,
        img_size=32,
    ),
}

# Defaults when neither the command line nor a recipe says otherwise. ``None`` = derived (see finalise).
DEFAULTS: Dict[str, Any] = dict(
    epochs=10,
    batch_size=64,
    opt="sgd",
    lr=0.05,
    momentum=0.9,
    weight_decay=5e-4,
    sched="cosine",
    decay_epochs=30,
    decay_rate=0.1,
    warmup_epochs=0,
    augment=None,
    img_size=None,
    label_smoothing=0.0,
    attn_lr_scale=None,
    attn_weight_decay=None,
    attn_init_gain=None,
)


class TrainConfigError(SalientError, ValueError):
    """Bad or inconsistent training options."""


def weights_source(args: argparse.Namespace) -> Optional[str]:
    """The pretrained weights a run starts from: ``--pretrained-path``, or the tag ``--pretrained`` means (the one in
    ``--model``, else timm's default for the architecture); None. Runs saved before the flag: their file or tag."""
    if getattr(args, "weights", None):  # resolved once, when the run was configured (args.json)
        return args.weights
    legacy = getattr(args, "pretrained", None)
    if isinstance(legacy, str):  # args.json of a run from before --pretrained became timm's flag
        return legacy
    path = getattr(args, "pretrained_path", None)
    if path:
        return path
    if not legacy:
        return None
    arch, tag = timm.models.split_model_name_tag(args.model)
    if tag:
        return tag
    cfg = timm.models.get_pretrained_cfg(arch)
    if cfg is None or not cfg.tag:
        raise TrainConfigError(f"--pretrained: timm has no pretrained weights for {arch}; give --pretrained-path FILE")
    return cfg.tag


def is_retrofit(args: argparse.Namespace) -> bool:
    """A pretrained model that gets new attention: its gates need their own lr (see ``salient_timm/optim.py``)."""
    return weights_source(args) is not None and args.attn != "none"


def run_label(args: argparse.Namespace) -> str:
    """``resnet50+salient (retrofit)``, ``salient_resnet18``: what was trained, for logs and titles; the run's
    ``ModelSpec.label``, so salient-train, salient-analyze and the model card name a model alike."""
    return ModelSpec.from_train_args(args, num_classes=0, in_chans=getattr(args, "in_chans", None) or 3).label


def finalise(args: argparse.Namespace) -> argparse.Namespace:
    recipe = RECIPES.get(args.recipe or "", {})
    for key, default in DEFAULTS.items():
        if getattr(args, key, None) is None:
            setattr(args, key, recipe.get(key, default))
    args.model_kwargs = parse_model_kwargs(args.model_kwargs)
    _input_size(args)
    _check_items(args)
    if args.img_size is None:
        args.img_size = args.canvas or IMG_SIZE[args.dataset]
    if args.augment is None:
        args.augment = args.dataset in ("cifar10", "cifar100", "imagefolder")
    if args.channels_last is None:  # faster on CPU as well as CUDA (benchmarks/RESULTS.md)
        args.channels_last = True
    _check_values(args)
    args.weights = weights_source(args)  # recorded: the tag --pretrained meant when the run began
    retrofit = is_retrofit(args)
    recipe = retrofit_defaults(args.attn)
    if args.attn_lr_scale is None:
        args.attn_lr_scale = recipe["attn_lr_scale"] if retrofit else 1.0
    if args.attn_weight_decay is None and retrofit:
        args.attn_weight_decay = 0.0
    if args.attn_init_gain is None:
        args.attn_init_gain = recipe["init_gain"] if retrofit else 0.0
    elif args.attn_init_gain and not retrofit:
        raise TrainConfigError(
            "--attn-init-gain applies to a retrofit (--pretrained or --pretrained-path, with --attn)"
        )
    return args


# float options: every one must be finite (click's ranges let nan and inf through)
FLOAT_OPTIONS = (
    "lr",
    "momentum",
    "weight_decay",
    "decay_epochs",
    "decay_rate",
    "label_smoothing",
    "attn_lr_scale",
    "attn_weight_decay",
    "attn_init_gain",
    "holdout",
)
# timm's create_scheduler_v2 names (timm lists none; checked against it at run time)
SCHEDULERS = ("cosine", "tanh", "step", "multistep", "plateau", "poly", "rsqrt", "constant")


def _close(name: str, valid: Sequence[str]) -> str:
    close = difflib.get_close_matches(name, valid, n=3)
    return f" (did you mean {', '.join(close)}?)" if close else ""


def parse_model_kwargs(given: Any) -> Dict[str, Any]:
    """``("channels=16,32 stem_width=16", ...)`` -> ``{"channels": (16, 32), "stem_width": 16}``: values as Python
    literals, else strings (timm's ``ParseKwargs``); a dict (a saved run's) is returned as it is."""
    if isinstance(given, dict):
        return given
    out: Dict[str, Any] = {}
    for token in (t for item in given or () for t in str(item).split()):
        key, sep, value = token.partition("=")
        if not sep or not key.isidentifier():
            raise TrainConfigError(f"--model-kwargs takes KEY=VALUE items, got {token!r}")
        try:
            out[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            out[key] = value
    return out


def _check_items(args: argparse.Namespace) -> None:
    """--canvas, --clutter and the subsets: only where they apply, with sizes that work."""
    canvas_ok = args.dataset in CANVAS_DATASETS
    if args.canvas is not None and not canvas_ok:
        raise TrainConfigError(f"--canvas applies to {' and '.join(CANVAS_DATASETS)}, not {args.dataset}")
    if args.clutter is not None and args.dataset != "cluttered-fashion-mnist":
        raise TrainConfigError(f"--clutter applies to cluttered-fashion-mnist, not {args.dataset}")
    if args.dataset == "cluttered-fashion-mnist":
        layout = ItemOptions(canvas=args.canvas, clutter=args.clutter).for_dataset(args.dataset)
        args.canvas, args.clutter = layout.canvas, layout.clutter  # recorded in args.json as used
    if args.canvas is not None and not ITEM_SIZE <= args.canvas <= 1024:
        raise TrainConfigError(f"--canvas must be {ITEM_SIZE} to 1024 pixels (the item size up), got {args.canvas}")
    if args.clutter is not None and not 0 <= args.clutter <= 256:
        raise TrainConfigError(f"--clutter must be 0 to 256 patches, got {args.clutter}")
    for split in ("train", "test"):
        keep = getattr(args, f"{split}_subset")
        if keep is not None and keep < 1:
            raise TrainConfigError(f"--{split}-subset must be at least 1 item, got {keep}")
    sources = [o for o, v in (("--pretrained", args.pretrained), ("--pretrained-path", args.pretrained_path),
               ("--initial-checkpoint", args.initial_checkpoint)) if v]  # fmt: skip
    if len(sources) > 1:
        raise TrainConfigError(f"{' and '.join(sources)}: give one source of starting weights")
    files = (("--pretrained-path", args.pretrained_path), ("--initial-checkpoint", args.initial_checkpoint))
    for option, path in files:
        if path and not os.path.isfile(path):
            raise TrainConfigError(f"{option} {path}: no such file")
    if getattr(args, "crop_pct", None) is not None and args.dataset != "imagefolder":
        raise TrainConfigError(f"--crop-pct applies to imagefolder (its evaluation crop), not {args.dataset}")
    holdout = getattr(args, "holdout", None)
    if holdout is not None and not 0 < holdout < 1:
        raise TrainConfigError(f"--holdout must be a share between 0 and 1 (e.g. 0.1), got {holdout}")


def item_options(args: argparse.Namespace) -> ItemOptions:
    """The data-set layout options of a run (runs saved before they existed: none)."""
    return ItemOptions(
        canvas=getattr(args, "canvas", None),
        clutter=getattr(args, "clutter", None),
        train_subset=getattr(args, "train_subset", None),
        test_subset=getattr(args, "test_subset", None),
        holdout=getattr(args, "holdout", None),
    )


def _check_values(args: argparse.Namespace) -> None:
    """Refuse, before anything is built, values the option types cannot catch (one TrainConfigError)."""
    for name in FLOAT_OPTIONS:
        value = getattr(args, name, None)
        if value is not None and not math.isfinite(value):
            raise TrainConfigError(f"--{name.replace('_', '-')} must be a finite number, got {value}")
    if not args.lr > 0:
        raise TrainConfigError(f"--lr must be a positive number, got {args.lr}")
    from timm.optim import list_optimizers

    optimizers = [str(name) for name in list_optimizers()]
    if args.opt.lower() not in optimizers:
        raise TrainConfigError(
            f"unknown optimizer --opt {args.opt!r}{_close(args.opt.lower(), optimizers)}; valid: "
            f"{', '.join(optimizers)}"
        )
    if args.sched not in SCHEDULERS:
        raise TrainConfigError(
            f"unknown scheduler --sched {args.sched!r}{_close(args.sched, SCHEDULERS)}; valid: {', '.join(SCHEDULERS)}"
        )
    check_model_name(args.model)
    resolve_attention(args.attn)  # UnknownAttentionKindError names the valid kinds


def check_model_name(name: str) -> str:
    """``salient_timm.spec.check_model_name`` as a usage error of salient-train."""
    try:
        return check(name)
    except ModelSpecError as e:
        raise TrainConfigError(str(e)) from e


def _input_size(args: argparse.Namespace) -> None:
    """--input-size C H W as --img-size H (square inputs; the channels are the dataset's, checked on the data)."""
    size = getattr(args, "input_size", None)
    if not size:
        return
    channels, height, width = size
    if height != width:
        raise TrainConfigError(f"--input-size {channels} {height} {width}: salient-train trains on square inputs")
    if args.img_size not in (None, height):
        raise TrainConfigError(f"--input-size {channels} {height} {width} and --img-size {args.img_size}: give one")
    args.img_size = height
