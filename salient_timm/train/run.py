"""One salient-train run: open (or resume) its folder, build data and model, train, checkpoint, export.

``run(args)`` takes the options ``salient_timm.train.cli`` resolves (timm's ``train.py`` names) and returns the
run's summary. The run folder's files are described in ``run_folder``; every file is written atomically.
"""

import json
import os
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

import torch
from timm.optim import create_optimizer_v2
from timm.scheduler import create_scheduler_v2
from timm.utils import ModelEmaV3, random_seed
from torch import nn
from torch.utils.data import DataLoader, Subset
from torch.utils.data.distributed import DistributedSampler

from ..checks import SingleValueBatchNormError, check_runs
from ..data import build_datasets
from ..deploy.hub import model_card, save_hf_folder
from ..errors import first_line
from ..io.atomic import atomic_write_text
from ..io.checkpoint import TrainCheckpoint
from ..io.weights import CheckpointError
from ..optim import retrofit_param_groups
from ..spec import ModelSpec
from .checkpoint import rng_state, set_rng_state
from .config import TrainConfigError, is_retrofit, item_options, run_label, weights_source
from .distributed import DistInfo, init_distributed, pick_device
from .engine import evaluate, train_one_epoch
from .model import build_model, final_feature_size, pretrained_head_classes
from .report import plot_curves, write_metrics
from .run_folder import best_row, lock_run_folder, remove_stale_temps, repair

__all__ = ["run"]


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
        atomic_write_text(os.path.join(args.out, "args.json"), json.dumps(_run_options(args), indent=2))


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


@dataclass
class _Run:
    """What a run builds before its first epoch, and what its epochs update."""

    args: Any
    device: torch.device
    info: DistInfo
    data: Any
    num_classes: int
    model: nn.Module
    optimizer: Any
    scheduler: Any
    ema: Optional[ModelEmaV3]
    amp: bool
    channels_last: bool
    loaders: "_Loaders"
    history: List[Dict[str, float]] = field(default_factory=list)
    start_epoch: int = 0
    initial: Optional[Dict[str, Any]] = None
    train_model: Any = None  # what the training step calls: the model, DDP- or torch.compile-wrapped

    @property
    def label(self) -> str:
        return run_label(self.args)

    def path(self, name: str) -> str:
        return os.path.join(self.args.out, name)


@dataclass
class _Loaders:
    train: DataLoader
    sampler: DistributedSampler
    test: DataLoader
    val: Optional[DataLoader]


def _run(args, device: torch.device, info: DistInfo) -> Dict[str, Any]:
    state = _open_run_folder(args, info)
    random_seed(args.seed)
    data, num_classes = _prepare_data(args)
    # a resume rebuilds the architecture only: every weight is in the checkpoint (no --pretrained read)
    model = build_model(args, num_classes, data.in_chans, load_weights=state is None).to(device)
    _check_trains(model, args, data.in_chans, info)
    _warn_tiny_maps(model, args, info)
    # recorded explicitly by new runs; None is what runs before the CPU default recorded: CUDA only
    channels_last = device.type == "cuda" if args.channels_last is None else args.channels_last
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = _optimizer(model, args)
    scheduler, _ = create_scheduler_v2(
        optimizer,
        sched=args.sched,
        num_epochs=args.epochs,
        decay_epochs=args.decay_epochs,
        decay_rate=args.decay_rate,
        warmup_epochs=args.warmup_epochs,
    )
    r = _Run(
        args,
        device,
        info,
        data,
        num_classes,
        model,
        optimizer=optimizer,
        scheduler=scheduler,
        ema=ModelEmaV3(model, decay=args.model_ema_decay) if getattr(args, "model_ema", False) else None,
        amp=device.type == "cuda" if args.amp is None else args.amp,
        channels_last=channels_last,
        loaders=_loaders(args, data, info, device),
    )
    if state is not None:
        _restore(r, state)
    _save_args(args, info)
    r.train_model = _wrapped(model, args, device, info)
    _announce(r)
    if (weights_source(args) or getattr(args, "initial_checkpoint", None)) and state is None:  # before any update
        r.initial = _evaluate_step0(r)
    started = time.perf_counter()
    _fit(r)
    _export_best(r)
    return _summary(r, time.perf_counter() - started)


def _open_run_folder(args, info: DistInfo) -> Optional[TrainCheckpoint]:
    """Check the run folder against the options; the last checkpoint of a run to resume (repaired first), or None.
    Temp files of interrupted writes are removed."""
    if args.batch_size % info.world_size:
        raise TrainConfigError(f"--batch-size {args.batch_size} is not divisible by {info.world_size} processes")
    last_path = os.path.join(args.out, "last.pth")
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
        state = TrainCheckpoint.read(last_path)
    elif args.resume:  # killed before its first epoch finished: start it again with its own options
        _log(info, f"{args.out} has no finished epoch yet; starting the run from epoch 1")
    if state is None:
        return None
    if info.is_main:
        for note in repair(args.out, state):
            _log(info, f"repaired {args.out}: {note}")
    done = state.epoch + 1
    if getattr(args, "epochs_given", False) and args.epochs <= done:
        raise TrainConfigError(
            f"--epochs {args.epochs}: the run in {args.out} has already done {done} epochs; "
            f"ask for more than {done} to extend it"
        )
    return state


def _prepare_data(args) -> Tuple[Any, int]:
    """The datasets and the class count; records in ``args`` what rebuilds and feeds the model without them."""
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
    return data, num_classes


def _wrapped(model: nn.Module, args, device: torch.device, info: DistInfo) -> Any:
    """The module the training step calls: DDP across processes, then ``torch.compile`` with --compile."""
    train_model: Any = model
    if info.enabled:
        train_model = nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )
    return torch.compile(train_model) if args.compile else train_model


def _loaders(args, data, info: DistInfo, device: torch.device) -> _Loaders:
    """Each process's share: the training set through a shuffling sampler, test and validation by stride."""
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
    if len(train_loader) == 0:
        raise TrainConfigError(f"--batch-size {args.batch_size} is larger than the training set ({len(data.train)})")

    def shard(split) -> DataLoader:
        rows = Subset(split, range(info.rank, len(split), info.world_size))
        return DataLoader(rows, batch_size=max(per_process, 64), num_workers=args.workers, pin_memory=pin)

    # --holdout: the validation split is evaluated every epoch, and best.pth is chosen on it
    return _Loaders(train_loader, sampler, shard(data.test), shard(data.val) if data.val is not None else None)


def _restore(r: _Run, state: TrainCheckpoint) -> None:
    """A resumed run's weights, optimizer, EMA, schedule, history and RNG, from its last checkpoint."""
    args = r.args
    try:
        r.model.load_state_dict(state.model)
        r.optimizer.load_state_dict(state.optimizer)
        if r.ema is not None:
            if state.model_ema is None:
                raise KeyError("model_ema")  # a run started without --model-ema
            r.ema.module.load_state_dict(state.model_ema)
    except (RuntimeError, ValueError, KeyError) as e:
        raise CheckpointError(f"{r.path('last.pth')} does not match this model/optimizer: {first_line(e)}") from e
    saved_epochs = int(state.args.get("epochs", args.epochs))
    if saved_epochs == args.epochs:
        r.scheduler.load_state_dict(state.scheduler)
    # else: a longer run; the scheduler built above spans the new --epochs (timm schedulers are functions
    # of the epoch), so the remaining epochs follow the new schedule from where the run stopped
    r.history = list(state.metrics)
    r.start_epoch = state.epoch + 1
    r.scheduler.step(r.start_epoch)
    set_rng_state(state.rng)
    extended = f", extended from {saved_epochs} to {args.epochs} epochs" if saved_epochs != args.epochs else ""
    _log(r.info, f"resuming {args.out} after epoch {r.start_epoch}{extended}")
    if extended:
        args.resumes = list(getattr(args, "resumes", None) or []) + [
            {"after_epoch": r.start_epoch, "epochs_before": saved_epochs, "epochs": args.epochs}
        ]


def _announce(r: _Run) -> None:
    args, data = r.args, r.data
    n_params = sum(p.numel() for p in r.model.parameters())
    _log(
        r.info,
        f"{r.label} ({n_params:,} params) on {args.dataset} "
        f"({len(data.train)} train / "
        + (f"{len(data.val)} validation / " if data.val is not None else "")
        + f"{len(data.test)} test, {args.img_size}px), {r.info.world_size} process(es) "
        f"on {r.device.type}, global batch {args.batch_size}, {args.epochs} epochs",
    )
    if is_retrofit(args):
        _log(
            r.info,
            f"retrofit: {args.attn} starts at init gain {args.attn_init_gain:g}; its parameters train at "
            f"lr x{args.attn_lr_scale:g}, weight decay {args.attn_weight_decay:g}",
        )


def _evaluate(r: _Run, model: nn.Module, loader: DataLoader, split: str = "test") -> Dict[str, float]:
    return evaluate(model, loader, nn.CrossEntropyLoss(), r.device, r.amp, r.channels_last, r.info, split=split)


def _evaluate_step0(r: _Run) -> Dict[str, Any]:
    """A fine-tune's evaluation before any update (initial_eval.json; curves.png plots it at epoch 0)."""
    initial: Dict[str, Any] = dict(_evaluate(r, r.model, r.loaders.test))
    initial["label"] = _step0_label(r.args, r.num_classes)
    _log(
        r.info,
        f"step 0 ({initial['label']}): "
        f"test loss {initial['test_loss']:.4f} top-1 {initial['test_top1']:.2f} top-5 {initial['test_top5']:.2f}",
    )
    if r.info.is_main:
        atomic_write_text(r.path("initial_eval.json"), json.dumps(initial, indent=2))
    return initial


def _fit(r: _Run) -> None:
    """Train from ``r.start_epoch`` to --epochs; after each epoch: evaluate, log, checkpoint (rank 0)."""
    args, info = r.args, r.info
    loss_fn = nn.CrossEntropyLoss(label_smoothing=args.label_smoothing)
    own_groups = _own_attention_group(args)
    ema = r.ema
    after_step = (lambda: ema.update(r.model)) if ema is not None else None
    for epoch in range(r.start_epoch, args.epochs):
        r.loaders.sampler.set_epoch(epoch)
        lr = r.optimizer.param_groups[0]["lr"]
        attn_lr = r.optimizer.param_groups[-1]["lr"] if len(r.optimizer.param_groups) > 1 and own_groups else None
        bar = _progress(len(r.loaders.train), f"epoch {epoch + 1}/{args.epochs}", info.is_main and not args.no_progress)
        t0 = time.perf_counter()
        try:
            train = train_one_epoch(
                r.train_model,
                r.loaders.train,
                r.optimizer,
                loss_fn,
                r.device,
                r.amp,
                r.channels_last,
                info,
                bar,
                after_step,
            )
        finally:
            if bar is not None:
                bar.close()
        r.scheduler.step(epoch + 1)
        test = _evaluate_epoch(r)
        row = {"epoch": epoch + 1, "lr": lr, **train, **test, "epoch_s": time.perf_counter() - t0}
        if attn_lr is not None:  # a retrofit's attention group (--attn-lr-scale / --attn-weight-decay)
            row["attn_lr"] = attn_lr
        r.history.append(row)
        _log(
            info,
            f"epoch {epoch + 1}/{args.epochs}: train loss {train['train_loss']:.4f} top-1 {train['train_top1']:.2f} | "
            + (f"val top-1 {test['val_top1']:.2f} | " if "val_top1" in test else "")
            + f"test loss {test['test_loss']:.4f} top-1 {test['test_top1']:.2f} top-5 {test['test_top5']:.2f} | "
            f"{train['img_per_s']:.0f} img/s | lr {lr:.4g}",
        )
        if info.is_main:
            # best.pth: the run_folder.best_row rule (validation where the run holds one out), as repair reads it
            _save_epoch(r, epoch, improved=best_row(r.history) is row)
        if info.enabled:
            torch.distributed.barrier()


def _evaluate_epoch(r: _Run) -> Dict[str, float]:
    """Test (and validation) metrics of the model the run keeps: the EMA's weights with --model-ema, as in timm,
    with the trained weights' own test metrics beside them (``raw_*``)."""
    evaluated = r.model if r.ema is None else r.ema.module
    metrics = _evaluate(r, evaluated, r.loaders.test)
    if r.loaders.val is not None:
        metrics.update(_evaluate(r, evaluated, r.loaders.val, split="val"))
    if r.ema is not None:  # the trained weights themselves, for the record
        metrics.update({f"raw_{k}": v for k, v in _evaluate(r, r.model, r.loaders.test).items()})
    return metrics


def _save_epoch(r: _Run, epoch: int, improved: bool) -> None:
    """last.pth (and best.pth when ``improved``), then curves.png, then metrics.json, which marks the epoch done."""
    checkpoint = TrainCheckpoint(
        model=r.model.state_dict(),
        optimizer=r.optimizer.state_dict(),
        scheduler=r.scheduler.state_dict(),
        epoch=epoch,
        rng=rng_state(),
        args=_run_options(r.args),
        metrics=r.history,
        model_ema=r.ema.module.state_dict() if r.ema is not None else None,
    )
    checkpoint.save(r.path("last.pth"))
    if improved:
        checkpoint.save(r.path("best.pth"))
    # each epoch, so a stopped run has its figure too; before metrics.json, which marks the epoch done
    title = f"{r.label} on {r.args.dataset}"
    plot_curves(r.args.out, r.history, title, r.initial or _saved_initial(r.args.out))
    write_metrics(r.args.out, r.history)


def _export_best(r: _Run) -> None:
    """--export-hf: the best checkpoint as a Hugging Face folder, with the run's own preprocessing."""
    best_path = r.path("best.pth")
    if not (r.info.is_main and getattr(r.args, "export_hf", None) and os.path.exists(best_path)):
        return
    _, best_model, data_config = ModelSpec.from_checkpoint(best_path)
    save_hf_folder(best_model, r.args.export_hf, model_card(r.label, best_path), data_config)
    _log(
        r.info,
        f"best model written to {r.args.export_hf} (timm.create_model('local-dir:{r.args.export_hf}', "
        "pretrained=True) reloads it)",
    )


def _summary(r: _Run, seconds: float) -> Dict[str, Any]:
    history = r.history
    best = best_row(history)
    summary = {
        "best_top1": best["test_top1"] if best else float("nan"),
        "best_epoch": best["epoch"] if best else 0,
        "last_top1": history[-1]["test_top1"] if history else float("nan"),
        "epochs": len(history),
        "seconds": seconds,
        "initial_top1": r.initial["test_top1"] if r.initial else None,
    }
    _log(
        r.info,
        f"done: {r.label} on {r.args.dataset}: best test top-1 {summary['best_top1']:.2f}% "
        f"(epoch {summary['best_epoch']}{', chosen on validation' if r.loaders.val is not None else ''}), "
        f"last {summary['last_top1']:.2f}%, {summary['seconds']:.1f} s; "
        f"run folder {r.args.out}",
    )
    return summary
