"""salient-train entry point: one process, or one of many under torchrun (DDP)."""

import argparse
import json
import os
import sys
import time
from typing import Any, Dict, List, Optional, Sequence

import click
import torch
from timm.optim import create_optimizer_v2
from timm.scheduler import create_scheduler_v2
from timm.utils import ModelEmaV3, random_seed
from torch import nn
from torch.utils.data import DataLoader, Subset
from torch.utils.data.distributed import DistributedSampler

from .. import __version__
from ..checks import SingleValueBatchNormError, check_runs
from ..errors import SalientError, first_line
from ..export import model_card, save_hf_folder
from ..retrofit import retrofit_param_groups
from ..spec import ModelSpec
from ..weights import CheckpointError
from .checkpoint import load_checkpoint, rng_state, save_checkpoint, set_rng_state
from .config import TrainConfigError, command_options, is_retrofit, item_options, resolve, run_label, weights_source
from .data import build_datasets
from .distributed import DistInfo, init_distributed, pick_device
from .engine import evaluate, train_one_epoch
from .model import build_model, final_feature_size, pretrained_head_classes
from .report import plot_curves, write_metrics
from .run_folder import lock_run_folder, remove_stale_temps, repair

__all__ = ["main", "run", "parse_args"]


def _log(info: DistInfo, text: str, err: bool = False) -> None:
    if info.is_main:
        print(text, flush=True, file=sys.stderr if err else sys.stdout)


def _progress(total: int, desc: str, enabled: bool):
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, leave=False, dynamic_ncols=True, file=sys.stderr)


def run(args) -> Dict[str, Any]:
    """Train as ``args`` say; returns the final summary (best/last test top-1, epochs, seconds)."""
    device = pick_device(args.device, int(os.environ.get("LOCAL_RANK", "0")))
    info = init_distributed(device)
    try:
        with lock_run_folder(args.out, enabled=info.is_main):
            return _run(args, device, info)
    finally:
        if info.enabled and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


TRANSIENT = ("epochs_given", "export_hf")  # parse-time facts, not options of the run


def _run_options(args) -> dict:
    """The run's options as saved in args.json and every checkpoint."""
    return {k: v for k, v in vars(args).items() if k not in TRANSIENT}


def _save_args(args, info: DistInfo) -> None:
    """args.json: the options the run actually uses (rewritten when a resume changes them)."""
    if info.is_main:
        os.makedirs(args.out, exist_ok=True)
        with open(os.path.join(args.out, "args.json"), "w") as f:
            json.dump(_run_options(args), f, indent=2)


def _own_attention_group(args) -> bool:
    return args.attn_weight_decay is not None or args.attn_lr_scale not in (None, 1.0)


def _optimizer(model: nn.Module, args):
    """timm's optimizer; attention parameters get their own group on a retrofit (``retrofit_param_groups``)."""
    params: Any = model
    if _own_attention_group(args):
        attn_wd = args.weight_decay if args.attn_weight_decay is None else args.attn_weight_decay
        params = retrofit_param_groups(model, args.lr, args.weight_decay, args.attn_lr_scale, attn_wd)
    return create_optimizer_v2(params, opt=args.opt, lr=args.lr, weight_decay=args.weight_decay, momentum=args.momentum)


def _warn_tiny_maps(model: nn.Module, args, info: DistInfo) -> None:
    size = final_feature_size(model, args.img_size)
    if size is not None and size < 2:
        _log(
            info,
            f"warning: the last stage sees {size}x{size} feature maps at {args.img_size} px; training may "
            f"not learn. Use --cifar-stem or a larger --img-size",
            err=True,
        )


def _check_trains(model: nn.Module, args, in_chans: int, info: DistInfo) -> None:
    """Refuse, before anything is written, a model that cannot run or train at the run's size and batch
    (e.g. halo at a size it cannot take; batch 1 with a 1x1 map for BatchNorm)."""
    per_process = args.batch_size // info.world_size
    try:
        check_runs(model, (per_process, in_chans, args.img_size, args.img_size), train=True)
    except SingleValueBatchNormError as e:
        processes = f" ({per_process} per process)" if info.world_size > 1 else ""
        raise TrainConfigError(
            f"--batch-size {args.batch_size}{processes}: {e}; use --batch-size 2 or more, --cifar-stem or a larger "
            "--img-size"
        ) from e


def _saved_initial(out: str) -> Optional[Dict[str, Any]]:
    """The step-0 evaluation a fine-tune wrote at its start (a resumed run plots it too)."""
    path = os.path.join(out, "initial_eval.json")
    if not os.path.isfile(path):
        return None
    with open(path) as f:
        return json.load(f)


def _step0_label(args, num_classes: int) -> str:
    head = pretrained_head_classes(args)
    if head != num_classes:
        return (
            f"pretrained backbone, new {num_classes}-class head (untrained: about chance"
            + (f"; the checkpoint's head had {head} classes" if head else "")
            + ")"
        )
    if args.attn == "none":
        return "pretrained"
    gain = getattr(args, "attn_init_gain", 0.0) or 0.0
    return f"pretrained, {args.attn} " + (f"near identity (gain {gain:g})" if gain else "as exact identity")


def _run(args, device: torch.device, info: DistInfo) -> Dict[str, Any]:
    if args.batch_size % info.world_size:
        raise TrainConfigError(f"--batch-size {args.batch_size} is not divisible by {info.world_size} processes")
    last_path, best_path = os.path.join(args.out, "last.pth"), os.path.join(args.out, "best.pth")
    if not args.resume and os.path.exists(last_path):
        raise TrainConfigError(
            f"{args.out} already holds a run; continue it with --resume {args.out} or pick another --out"
        )
    if info.is_main:
        stale = remove_stale_temps(args.out)
        if stale:
            _log(info, f"removed {len(stale)} temp file(s) of interrupted writes in {args.out}")
    state = None
    if args.resume and os.path.exists(last_path):
        state = load_checkpoint(last_path)
    elif args.resume:  # killed before its first epoch finished: start it again with its own options
        _log(info, f"{args.out} has no finished epoch yet; starting the run from epoch 1")
    if state is not None and info.is_main:
        for note in repair(args.out, state):
            _log(info, f"repaired {args.out}: {note}")
    if state is not None:
        done = int(state["epoch"]) + 1
        if getattr(args, "epochs_given", False) and args.epochs <= done:
            raise TrainConfigError(
                f"--epochs {args.epochs}: the run in {args.out} has already done {done} epochs; "
                f"ask for more than {done} to extend it"
            )
    random_seed(args.seed)
    data = build_datasets(
        args.dataset,
        args.data_dir,
        args.img_size,
        args.augment,
        args.download,
        item_options(args),
        getattr(args, "crop_pct", None),
    )
    num_classes = args.num_classes or data.num_classes
    if num_classes < data.num_classes:
        raise TrainConfigError(
            f"--num-classes {num_classes} is smaller than {args.dataset}'s {data.num_classes} classes"
        )
    # recorded in args.json and every checkpoint, so the model can be rebuilt and fed without the dataset
    args.num_classes, args.in_chans = num_classes, data.in_chans
    args.data_mean, args.data_std = list(data.mean), list(data.std)
    # the evaluation transform exactly (timm's data config), and what each class index means
    args.data_config = {k: list(v) if isinstance(v, tuple) else v for k, v in data.eval_config.items()}
    wanted_chans = (getattr(args, "input_size", None) or (None,))[0]
    if wanted_chans not in (None, data.in_chans):
        raise TrainConfigError(f"--input-size {wanted_chans} ...: {args.dataset} has {data.in_chans} channel(s)")
    args.class_names = list(data.class_names)
    # a resume rebuilds the architecture only: every weight is in the checkpoint (no --pretrained read)
    model = build_model(args, num_classes, data.in_chans, load_weights=state is None).to(device)
    _check_trains(model, args, data.in_chans, info)
    _warn_tiny_maps(model, args, info)
    amp = device.type == "cuda" if args.amp is None else args.amp
    # recorded explicitly by new runs; None is what runs before the CPU default recorded: CUDA only
    channels_last = device.type == "cuda" if args.channels_last is None else args.channels_last
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = _optimizer(model, args)
    ema = ModelEmaV3(model, decay=args.model_ema_decay) if getattr(args, "model_ema", False) else None
    own_groups = _own_attention_group(args)
    scheduler, _ = create_scheduler_v2(
        optimizer,
        sched=args.sched,
        num_epochs=args.epochs,
        decay_epochs=args.decay_epochs,
        decay_rate=args.decay_rate,
        warmup_epochs=args.warmup_epochs,
    )
    history: List[Dict[str, float]] = []
    start_epoch = 0
    if state is not None:
        try:
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            if ema is not None:
                ema.module.load_state_dict(state["model_ema"])
        except (RuntimeError, ValueError, KeyError) as e:
            raise CheckpointError(f"{last_path} does not match this model/optimizer: {first_line(e)}") from e
        saved_epochs = int(state["args"].get("epochs", args.epochs))
        if saved_epochs == args.epochs:
            scheduler.load_state_dict(state["scheduler"])
        # else: a longer run; the scheduler built above spans the new --epochs (timm schedulers are functions
        # of the epoch), so the remaining epochs follow the new schedule from where the run stopped
        history = list(state["metrics"])
        start_epoch = int(state["epoch"]) + 1
        scheduler.step(start_epoch)
        set_rng_state(state["rng"])
        extended = f", extended from {saved_epochs} to {args.epochs} epochs" if saved_epochs != args.epochs else ""
        _log(info, f"resuming {args.out} after epoch {start_epoch}{extended}")
        if extended:
            args.resumes = list(getattr(args, "resumes", None) or []) + [
                {"after_epoch": start_epoch, "epochs_before": saved_epochs, "epochs": args.epochs}
            ]
    _save_args(args, info)

    train_model: Any = model  # DDP and torch.compile wrap it
    if info.enabled:
        train_model = nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )
    if args.compile:
        train_model = torch.compile(train_model)
    sampler: DistributedSampler = DistributedSampler(
        data.train, num_replicas=info.world_size, rank=info.rank, shuffle=True, seed=args.seed
    )
    per_process = args.batch_size // info.world_size
    pin = device.type == "cuda"
    train_loader = DataLoader(
        data.train,
        batch_size=per_process,
        sampler=sampler,
        drop_last=True,
        num_workers=args.workers,
        pin_memory=pin,
        persistent_workers=args.workers > 0,
    )
    test_shard = Subset(data.test, range(info.rank, len(data.test), info.world_size))
    test_loader = DataLoader(test_shard, batch_size=max(per_process, 64), num_workers=args.workers, pin_memory=pin)
    val_loader = None
    if data.val is not None:  # --holdout: evaluated every epoch, and best.pth is chosen on it
        val_shard = Subset(data.val, range(info.rank, len(data.val), info.world_size))
        val_loader = DataLoader(val_shard, batch_size=max(per_process, 64), num_workers=args.workers, pin_memory=pin)
    select = "val_top1" if val_loader is not None else "test_top1"
    if len(train_loader) == 0:
        raise TrainConfigError(f"--batch-size {args.batch_size} is larger than the training set ({len(data.train)})")
    loss_fn = nn.CrossEntropyLoss(label_smoothing=args.label_smoothing)
    eval_loss = nn.CrossEntropyLoss()
    n_params = sum(p.numel() for p in model.parameters())
    label = run_label(args)
    _log(
        info,
        f"{label} ({n_params:,} params) on {args.dataset} "
        f"({len(data.train)} train / "
        + (f"{len(data.val)} validation / " if data.val is not None else "")
        + f"{len(data.test)} test, {args.img_size}px), {info.world_size} process(es) "
        f"on {device.type}, global batch {args.batch_size}, {args.epochs} epochs",
    )
    if is_retrofit(args):
        _log(
            info,
            f"retrofit: {args.attn} starts at init gain {args.attn_init_gain:g}; its parameters train at "
            f"lr x{args.attn_lr_scale:g}, weight decay {args.attn_weight_decay:g}",
        )

    initial: Optional[Dict[str, Any]] = None
    if (weights_source(args) or getattr(args, "initial_checkpoint", None)) and state is None:  # before any update
        initial = dict(evaluate(model, test_loader, eval_loss, device, amp, channels_last, info))
        initial["label"] = _step0_label(args, num_classes)
        _log(
            info,
            f"step 0 ({initial['label']}): "
            f"test loss {initial['test_loss']:.4f} top-1 {initial['test_top1']:.2f} top-5 {initial['test_top5']:.2f}",
        )
        if info.is_main:
            with open(os.path.join(args.out, "initial_eval.json"), "w") as f:
                json.dump(initial, f, indent=2)
    best = max((h[select] for h in history), default=-1.0)
    started = time.perf_counter()
    for epoch in range(start_epoch, args.epochs):
        sampler.set_epoch(epoch)
        lr = optimizer.param_groups[0]["lr"]
        attn_lr = optimizer.param_groups[-1]["lr"] if len(optimizer.param_groups) > 1 and own_groups else None
        bar = _progress(len(train_loader), f"epoch {epoch + 1}/{args.epochs}", info.is_main and not args.no_progress)
        t0 = time.perf_counter()
        try:
            after_step = (lambda: ema.update(model)) if ema is not None else None
            train = train_one_epoch(
                train_model, train_loader, optimizer, loss_fn, device, amp, channels_last, info, bar, after_step
            )
        finally:
            if bar is not None:
                bar.close()
        scheduler.step(epoch + 1)
        evaluated = model if ema is None else ema.module  # the EMA's weights are what is evaluated, as in timm
        test = evaluate(evaluated, test_loader, eval_loss, device, amp, channels_last, info)
        if val_loader is not None:
            test.update(evaluate(evaluated, val_loader, eval_loss, device, amp, channels_last, info, split="val"))
        if ema is not None:  # the trained weights themselves, for the record
            raw = evaluate(model, test_loader, eval_loss, device, amp, channels_last, info)
            test.update({f"raw_{k}": v for k, v in raw.items()})
        row = {"epoch": epoch + 1, "lr": lr, **train, **test, "epoch_s": time.perf_counter() - t0}
        if attn_lr is not None:  # a retrofit's attention group (--attn-lr-scale / --attn-weight-decay)
            row["attn_lr"] = attn_lr
        history.append(row)
        _log(
            info,
            f"epoch {epoch + 1}/{args.epochs}: train loss {train['train_loss']:.4f} top-1 {train['train_top1']:.2f} | "
            + (f"val top-1 {test['val_top1']:.2f} | " if "val_top1" in test else "")
            + f"test loss {test['test_loss']:.4f} top-1 {test['test_top1']:.2f} top-5 {test['test_top5']:.2f} | "
            f"{train['img_per_s']:.0f} img/s | lr {lr:.4g}",
        )
        if info.is_main:
            ckpt = {
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "scaler": None,
                "epoch": epoch,
                "rng": rng_state(),
                "args": _run_options(args),
                "metrics": history,
            }
            if ema is not None:
                ckpt["model_ema"] = ema.module.state_dict()
            save_checkpoint(last_path, ckpt)
            if test[select] > best:  # chosen on the validation split where there is one
                best = test[select]
                save_checkpoint(best_path, ckpt)
            # each epoch, so a stopped run has its figure too; before metrics.json, which marks the epoch done
            plot_curves(args.out, history, f"{label} on {args.dataset}", initial or _saved_initial(args.out))
            write_metrics(args.out, history)
        if info.enabled:
            torch.distributed.barrier()

    if info.is_main and getattr(args, "export_hf", None) and os.path.exists(best_path):
        _, best_model, data_config = ModelSpec.from_checkpoint(best_path)  # the run's own preprocessing
        save_hf_folder(best_model, args.export_hf, model_card(label, best_path), data_config)
        _log(
            info,
            f"best model written to {args.export_hf} (timm.create_model('local-dir:{args.export_hf}', "
            "pretrained=True) reloads it)",
        )
    best_row = max(history, key=lambda h: h.get(select, h["test_top1"])) if history else None
    summary = {
        "best_top1": best_row["test_top1"] if best_row else float("nan"),
        "best_epoch": best_row["epoch"] if best_row else 0,
        "last_top1": history[-1]["test_top1"] if history else float("nan"),
        "epochs": len(history),
        "seconds": time.perf_counter() - started,
        "initial_top1": initial["test_top1"] if initial else None,
    }
    _log(
        info,
        f"done: {label} on {args.dataset}: best test top-1 {summary['best_top1']:.2f}% "
        f"(epoch {summary['best_epoch']}{', chosen on validation' if val_loader is not None else ''}), "
        f"last {summary['last_top1']:.2f}%, {summary['seconds']:.1f} s; "
        f"run folder {args.out}",
    )
    return summary


def execute(ctx: click.Context) -> None:
    """Run salient-train from a parsed command line (``salient_train.cli``'s and this module's): a usage error, a
    ``SalientError`` or Ctrl-C each end with one line and their exit code."""
    args = None
    try:
        args = resolve(ctx)
        run(args)
    except TrainConfigError as e:
        raise click.UsageError(str(e), ctx) from e
    except SalientError as e:
        raise click.ClickException(str(e)) from e
    except KeyboardInterrupt:
        out = getattr(args, "out", None)
        done = out and os.path.exists(os.path.join(out, "last.pth"))
        click.echo(
            "interrupted"
            + (
                f": {out} keeps every finished epoch; continue with --resume {out}"
                if done
                else (f": no epoch finished; start again with --resume {out}" if out else "")
            ),
            err=True,
        )
        ctx.exit(130)


def _command(**_params) -> None:
    execute(click.get_current_context())


main = click.version_option(__version__, prog_name="salient-train")(
    click.Command(
        "salient-train",
        callback=_command,
        params=command_options(),
        context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110},
        help="Train or fine-tune a timm ResNet, optionally retrofitted with attention. Launch with torchrun for "
        "several processes (DDP; NCCL on GPU, gloo on CPU).\n\n"
        "A retrofit (--pretrained or --pretrained-path, with --attn) starts the attention as the identity and "
        "trains it with --attn-lr-scale and --attn-weight-decay.",
    )
)


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    """Parse a salient-train command line (without the program name) into the run's options."""
    with main.make_context("salient-train", list(argv or [])) as ctx:
        return resolve(ctx)


if __name__ == "__main__":
    main()
