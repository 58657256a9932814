"""salient-train's command line as data: the click option table (timm's ``train.py`` names) and the run's
options resolved from a parsed command line, a fresh run (``config``) or ``--resume`` (``resume``)."""

import argparse
from typing import List

import click

from ..data import CLUTTER_PATCH, CLUTTERED_CANVAS, CLUTTERED_CLUTTER
from ..layers.create_attn import attention_kinds
from ..optim import RETROFIT_DEFAULTS
from .config import DATASETS, DEFAULTS, IMG_SIZE, RECIPES, TrainConfigError, finalise
from .resume import resumed

__all__ = ["command_options", "resolve"]


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


def resolve(ctx: click.Context) -> argparse.Namespace:
    """The run's options from a parsed command line (a fresh run, or ``--resume``)."""
    _data_folder(ctx)
    if ctx.params["resume"]:
        return resumed(ctx)
    required = {"--model": "model", "--dataset": "dataset", "--output": "out"}
    missing = [option for option, name in required.items() if not ctx.params[name]]
    if missing:
        raise click.UsageError(f"missing option(s) {', '.join(missing)} (required unless --resume RUN_DIR)", ctx)
    args = finalise(argparse.Namespace(**ctx.params))
    args.epochs_given = True
    return args
