"""salient-train's options (timm's train.py names), recipes, and how a resumed run treats them.

Option values resolve in this order: the command line, then ``--recipe``, then ``DEFAULTS``.
With ``--resume RUN_DIR`` the run's saved options (``args.json``) are used; only the options in
``RESUME_MAY_CHANGE`` may be given again with another value, and ``--epochs`` may only grow
(the schedule is then recomputed for the new length, see ``README.md``).
"""

import argparse
import ast
import difflib
import json
import math
import os
from typing import Any, Dict, List, Optional, Sequence

import click
import timm

from ..data import CLUTTER_PATCH, CLUTTERED_CANVAS, CLUTTERED_CLUTTER, DATASET_NAMES, ITEM_SIZE, ItemOptions
from ..errors import SalientError
from ..layers.create_attn import attention_kinds, resolve_attention
from ..retrofit import RETROFIT_DEFAULTS, retrofit_defaults
from ..spec import ModelSpec, ModelSpecError
from ..spec import check_model_name as check

__all__ = [
    "RECIPES",
    "DATASETS",
    "DEFAULTS",
    "RESUME_MAY_CHANGE",
    "TrainConfigError",
    "command_options",
    "resolve",
    "is_retrofit",
    "run_label",
    "weights_source",
    "item_options",
    "parse_model_kwargs",
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

# Defaults when neither the command line nor a recipe says otherwise. ``None`` = derived (see _finalise).
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
# Options a resumed run may take with a new value: where and how it runs, not what it computes.
RESUME_MAY_CHANGE = ("epochs", "device", "workers", "no_progress", "compile", "export_hf")


class TrainConfigError(SalientError, ValueError):
    """Bad or inconsistent training options."""


def _default(name: str) -> str:
    return f"{DEFAULTS[name]}, or the recipe's"


def _per_kind(key: str) -> str:
    rows = [f"{kind} {recipe[key]:g}" for kind, recipe in RETROFIT_DEFAULTS.items() if kind != "salient"]
    return ", ".join(rows) + f", other kinds {RETROFIT_DEFAULTS['salient'][key]:g}"


def command_options() -> List[click.Parameter]:
    """Every salient-train option, in help order. Names follow timm's train.py where it has one."""
    kinds = "|".join(attention_kinds()[:4])
    return [
        click.Argument(["data"], required=False, metavar="[DATA_DIR]"),  # timm's positional data folder
        # model
        click.Option(["--model", "-m"], help="timm model name, salient_*/ssa_* included [required unless --resume]"),
        click.Option(
            ["--attn"],
            default="none",
            show_default=True,
            help=f"attention to inject into the model's residual blocks: {kinds}|eca|cbam|...",
        ),
        click.Option(
            ["--position"],
            type=click.Choice(["post", "mid"]),
            default="post",
            show_default=True,
            help="post: before the shortcut add (the seed's position); mid: after the 3x3 conv",
        ),
        click.Option(
            ["--attn-stages"],
            default=None,
            metavar="N,N,...",
            help="the residual stages that get --attn, numbered from 1 (e.g. 1,2: the first two; a ResNet's layer1 "
            "and layer2)  [default: all]",
        ),
        click.Option(
            ["--pretrained"],
            is_flag=True,
            help="start from the model's pretrained weights, as timm's train.py: the tag in --model "
            "(resnet50.a1_in1k) or timm's default one; read from the Hugging Face cache or downloaded. With --attn "
            "this is a retrofit: the attention starts as the identity",
        ),
        click.Option(
            ["--pretrained-path"],
            default=None,
            metavar="FILE",
            help="start from these weights instead (safetensors, torch.save, a salient-train best.pth), adapted as "
            "timm adapts pretrained weights: a head of another size is replaced; with --attn a retrofit",
        ),
        click.Option(
            ["--initial-checkpoint"],
            default=None,
            metavar="FILE",
            help="load this checkpoint of exactly this model (attention included) after building it, strictly, "
            "as timm's train.py does",
        ),
        click.Option(
            ["--num-classes"],
            type=click.IntRange(min=1),
            default=None,
            help="classifier size  [default: the dataset's class count]",
        ),
        click.Option(
            ["--cifar-stem"], is_flag=True, help="3x3 stride-1 stem without max-pool (for inputs of 32 px or less)"
        ),
        click.Option(["--freeze-bn"], is_flag=True, help="freeze every BatchNorm (statistics and affine)"),
        click.Option(
            ["--model-kwargs"],
            multiple=True,
            metavar="KEY=VALUE",
            help="more timm.create_model arguments, as timm's train.py takes them, values read as Python "
            "literals (repeatable; e.g. --model-kwargs channels=16,32,64,128 --model-kwargs stem_width=16)",
        ),
        # retrofit
        click.Option(
            ["--attn-lr-scale"],
            type=click.FloatRange(min=0),
            default=None,
            help="lr multiplier of the attention parameters  [default for a retrofit: "
            + _per_kind("attn_lr_scale")
            + "; 1 otherwise]",
        ),
        click.Option(
            ["--attn-init-gain"],
            type=click.FloatRange(min=0),
            default=None,
            help="retrofit start: 0 = the exact identity; g > 0 = near-identity, the gate's last layer at g x "
            "its fresh init so the gate learns from step 1  [default: " + _per_kind("init_gain") + "]",
        ),
        click.Option(
            ["--attn-weight-decay"],
            type=click.FloatRange(min=0),
            default=None,
            help="weight decay of the attention parameters  [default: 0 for a retrofit, else --weight-decay "
            "split as timm does]",
        ),
        # data
        click.Option(
            ["--dataset"],
            type=click.Choice(DATASETS),
            default=None,
            help="digits needs no download (scikit-learn's 8x8 digits)  [required unless --resume]",
        ),
        click.Option(
            ["--data-dir"],
            default=None,
            help="dataset root (fashion-mnist: idx files; imagefolder: train/ and val/; cifar: torchvision's folders)",
        ),
        click.Option(["--download"], is_flag=True, help="allow downloading CIFAR into --data-dir"),
        click.Option(
            ["--canvas"],
            type=int,
            default=None,
            help="fashion-mnist: centre each 28x28 item on a black canvas of this size; cluttered-fashion-mnist: "
            f"the canvas the items are scattered on  [default: none; cluttered {CLUTTERED_CANVAS}]",
        ),
        click.Option(
            ["--clutter"],
            type=int,
            default=None,
            help=f"cluttered-fashion-mnist: {CLUTTER_PATCH}x{CLUTTER_PATCH} patches of other items on each canvas  "
            f"[default: {CLUTTERED_CLUTTER}]",
        ),
        click.Option(
            ["--train-subset"],
            type=int,
            default=None,
            metavar="N",
            help="train on N items of the training split, drawn per class in proportion (stratified; the same "
            "items for every run, whatever --seed)  [default: all]",
        ),
        click.Option(
            ["--test-subset"],
            type=int,
            default=None,
            metavar="N",
            help="evaluate on N items of the test split, stratified as --train-subset  [default: all]",
        ),
        click.Option(
            ["--holdout"],
            type=float,
            default=None,
            metavar="FRACTION",
            help="hold out this share of the training items (stratified, the same for every run) as a validation "
            "set: nothing trains on it, every epoch is evaluated on it (val_top1), and best.pth is chosen on it, "
            "so a schedule can be chosen without the test set  [default: none]",
        ),
        click.Option(
            ["--img-size"],
            type=click.IntRange(min=1),
            default=None,
            help="input size  [default: " + ", ".join(f"{k} {v}" for k, v in IMG_SIZE.items()) + "]",
        ),
        click.Option(
            ["--crop-pct"],
            type=click.FloatRange(0, 1, min_open=True),
            default=None,
            help="imagefolder: the evaluation centre crop, as timm's train.py (recorded in the checkpoint and the "
            "exported folder's config)  [default: timm's 0.875]",
        ),
        click.Option(
            ["--input-size"],
            type=click.IntRange(min=1),
            nargs=3,
            default=None,
            metavar="C H W",
            help="timm's name for the input shape: square images, its channels the dataset's (--img-size S is "
            "the same as 3 S S on RGB data)",
        ),
        click.Option(
            ["--augment/--no-augment"],
            default=None,
            help="training augmentation  [default: on for cifar/imagefolder, off for digits/fashion-mnist]",
        ),
        click.Option(
            ["--workers", "-j"],
            type=click.IntRange(min=0),
            default=0,
            show_default=True,
            help="data-loading worker processes",
        ),
        # optimisation
        click.Option(
            ["--recipe"],
            type=click.Choice(sorted(RECIPES)),
            default=None,
            help="preset: "
            + "; ".join(f"{k}: " + ", ".join(f"{a}={b}" for a, b in v.items()) for k, v in RECIPES.items()),
        ),
        click.Option(
            ["--epochs"],
            type=click.IntRange(min=1),
            default=None,
            show_default=_default("epochs"),
            help="epochs to train (on --resume: the new total, more than the run has done)",
        ),
        click.Option(
            ["--batch-size", "-b"],
            type=click.IntRange(min=1),
            default=None,
            show_default=_default("batch_size"),
            help="global batch size (split across processes)",
        ),
        click.Option(
            ["--opt"], default=None, show_default=_default("opt"), help="timm optimizer name (sgd, adamw, ...)"
        ),
        click.Option(["--lr"], type=float, default=None, show_default=_default("lr"), help="base learning rate"),
        click.Option(
            ["--momentum"],
            type=click.FloatRange(min=0),
            default=None,
            show_default=_default("momentum"),
            help="optimizer momentum",
        ),
        click.Option(
            ["--weight-decay"],
            type=click.FloatRange(min=0),
            default=None,
            show_default=_default("weight_decay"),
            help="weight decay (none on biases and norms, as in timm)",
        ),
        click.Option(
            ["--sched"], default=None, show_default=_default("sched"), help="timm scheduler name (step, cosine, ...)"
        ),
        click.Option(
            ["--decay-epochs"],
            type=click.FloatRange(min=0, min_open=True),
            default=None,
            show_default=_default("decay_epochs"),
            help="step scheduler: epochs between decays",
        ),
        click.Option(
            ["--decay-rate"],
            type=click.FloatRange(min=0),
            default=None,
            show_default=_default("decay_rate"),
            help="step scheduler: lr factor at each decay",
        ),
        click.Option(
            ["--warmup-epochs"],
            type=click.IntRange(min=0),
            default=None,
            show_default=_default("warmup_epochs"),
            help="linear lr warm-up epochs",
        ),
        click.Option(
            ["--smoothing", "--label-smoothing", "label_smoothing"],
            type=click.FloatRange(0, 1, max_open=True),
            default=None,
            show_default=_default("label_smoothing"),
            help="label smoothing",
        ),
        click.Option(
            ["--model-ema"],
            is_flag=True,
            help="keep an exponential moving average of the weights (timm's ModelEmaV3); it is what is evaluated, "
            "chosen for best.pth and exported, as timm's train.py evaluates it",
        ),
        click.Option(
            ["--model-ema-decay"],
            type=click.FloatRange(0, 1, max_open=True),
            default=0.9998,
            show_default=True,
            help="decay of the moving average, per step",
        ),
        # run
        click.Option(
            ["--output", "--out", "out"],
            default=None,
            metavar="RUN_DIR",
            help="run folder: checkpoints, metrics.csv/json, curves.png  [required unless --resume]",
        ),
        click.Option(
            ["--resume"],
            default=None,
            metavar="RUN_DIR",
            help="continue the run in RUN_DIR from its last checkpoint, with its own options",
        ),
        click.Option(["--seed"], type=int, default=0, show_default=True, help="random seed"),
        click.Option(["--device"], default=None, help="cpu, cuda, cuda:1  [default: cuda when available]"),
        click.Option(["--amp/--no-amp"], default=None, help="bf16 autocast  [default: on with CUDA]"),
        click.Option(
            ["--channels-last/--no-channels-last"],
            default=None,
            help="channels_last memory format  [default: on; on CPU a resnet50 training step is 1.4x faster "
            "with it, see benchmarks/RESULTS.md]",
        ),
        click.Option(["--compile", "--torchcompile", "compile"], is_flag=True, help="torch.compile the model"),
        click.Option(["--no-progress"], is_flag=True, help="no progress bar"),
        click.Option(
            ["--export-hf"],
            default=None,
            metavar="DIR",
            help="when the run ends, write its best model as a Hugging Face folder (timm's save_for_hf and a "
            "model card); with --resume RUN_DIR on a finished run, only that",
        ),
    ]


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
    """A pretrained model that gets new attention: its gates need their own lr (see ``retrofit.py``)."""
    return weights_source(args) is not None and args.attn != "none"


def run_label(args: argparse.Namespace) -> str:
    """``resnet50+salient (retrofit)``, ``salient_resnet18``: what was trained, for logs and titles; the run's
    ``ModelSpec.label``, so salient-train, salient-analyze and the model card name a model alike."""
    return ModelSpec.from_train_args(args, num_classes=0, in_chans=getattr(args, "in_chans", None) or 3).label


def _finalise(args: argparse.Namespace) -> argparse.Namespace:
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


def _comparable(name: str, value: Any) -> Any:
    """An option's value as given and as saved in args.json, in one form (JSON turns tuples into lists)."""
    if name == "model_kwargs":
        value = parse_model_kwargs(value)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in value.items()}
    return value


def _resumed(ctx: click.Context) -> argparse.Namespace:
    """The run's saved options, with what this command line may change applied (see ``RESUME_MAY_CHANGE``)."""
    run_dir = ctx.params["resume"]
    if os.path.isfile(run_dir) and os.path.isfile(os.path.join(os.path.dirname(run_dir) or ".", "args.json")):
        run_dir = os.path.dirname(run_dir) or "."  # timm's habit: a checkpoint inside the run folder
    saved = os.path.join(run_dir, "args.json")
    if not os.path.exists(run_dir):
        raise TrainConfigError(f"--resume {run_dir}: no such folder; give the run folder salient-train wrote")
    if not os.path.isfile(saved):
        raise TrainConfigError(
            f"--resume {run_dir}: no args.json there; give the run folder salient-train wrote (it holds args.json "
            "and last.pth)"
        )
    try:
        with open(saved) as f:
            stored = json.load(f)
    except (OSError, ValueError) as e:
        raise TrainConfigError(f"--resume {run_dir}: args.json is unreadable ({e})") from e
    given = {
        name
        for name in ctx.params
        if name != "resume" and ctx.get_parameter_source(name) == click.core.ParameterSource.COMMANDLINE
    }
    clashing = sorted(
        name
        for name in given - set(RESUME_MAY_CHANGE)
        if name in stored and _comparable(name, stored[name]) != _comparable(name, ctx.params[name])
    )
    if clashing:
        shown = ", ".join(f"--{n.replace('_', '-')} {ctx.params[n]} (run: {stored[n]})" for n in clashing)
        raise TrainConfigError(
            f"--resume keeps the run's options; these differ: {shown}. Options that may change "
            f"on resume: {', '.join('--' + n.replace('_', '-') for n in RESUME_MAY_CHANGE)}"
        )
    args = argparse.Namespace(**{**ctx.params, **stored})
    for name in given & set(RESUME_MAY_CHANGE):
        setattr(args, name, ctx.params[name])
    args.resume = args.out = run_dir
    args.epochs_given = "epochs" in given
    return args


def _data_folder(ctx: click.Context) -> None:
    """timm's positional DATA_DIR: the same as --data-dir (they must agree), and a folder with no --dataset is an
    image folder."""
    folder = ctx.params.pop("data", None)
    if folder is None:
        return
    if ctx.params.get("data_dir") not in (None, folder):
        raise TrainConfigError(f"DATA_DIR {folder} and --data-dir {ctx.params['data_dir']}: give the folder once")
    ctx.params["data_dir"] = folder
    if not ctx.params.get("dataset") and not ctx.params.get("resume"):
        ctx.params["dataset"] = "imagefolder"


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


def resolve(ctx: click.Context) -> argparse.Namespace:
    """The run's options from a parsed command line (a fresh run, or ``--resume``)."""
    _data_folder(ctx)
    if ctx.params["resume"]:
        return _resumed(ctx)
    required = {"--model": "model", "--dataset": "dataset", "--output": "out"}
    missing = [option for option, name in required.items() if not ctx.params[name]]
    if missing:
        raise click.UsageError(f"missing option(s) {', '.join(missing)} (required unless --resume RUN_DIR)", ctx)
    args = _finalise(argparse.Namespace(**ctx.params))
    args.epochs_given = True
    return args
