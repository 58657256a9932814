"""Saliency maps: run images through a model, record every gate, summarise and draw them.

Images are read with Pillow and preprocessed with timm's ``create_transform`` from the model's
data config (a salient-train checkpoint carries its input size, channels, mean and std; other
models use their timm pretrained cfg). The figure has one row per image: the input as the model
sees it, then one overlay per stage (its last block's gate) or per block (``all_blocks``): the
gate map upsampled onto the image, with a colour bar and the map's min/mean/max.

Localization, on images with a known object box (``cluttered-fashion-mnist``): ``localization`` scores every
gate, the network's own stage-end features, chance, ceiling and baselines with ``salient_analysis.localization``
(pointing game and energy in box at the map's own resolution).

Statistics are read against each gate's neutral value ``gate(0)`` (0.5 for the seed's sigmoid,
1.0 for an identity-started ``2*sigmoid`` gate): ``mean |dev|`` is how far the gate is from
doing nothing, ``rel std`` (std / mean) how much it modulates the features from pixel to pixel
(or channel to channel for SE), whatever the gate's scale.
"""

import math
import os
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from timm.data import create_transform, resolve_data_config
from torch import nn

from salient_timm import capture_gates, find_residual_blocks
from salient_timm.data import DatasetError, ItemOptions, fashion_mnist_split
from salient_timm.errors import SalientError
from salient_timm.extras import require
from salient_timm.gates import gate_modules, gate_neutrals
from salient_timm.layers import ScaledSigmoid
from salient_timm.module_mode import training_mode
from salient_timm.spec import ModelSpec
from salient_timm.surgery import residual_stages
from salient_timm.weights import NotATrainingCheckpointError

from .localization import (  # noqa: F401  (re-exported: the metrics' home is salient_analysis.localization)
    baseline_maps,
    box_share,
    energy_in_box,
    feature_maps,
    pointing_game,
    reference_rows,
    score_row,
)

__all__ = [
    "PANEL_INCHES",
    "load_for_maps",
    "with_channels",
    "read_images",
    "gate_stats",
    "gate_variation",
    "stage_blocks",
    "draw_maps",
    "MapsError",
    "pointing_game",
    "energy_in_box",
    "box_share",
    "localization",
    "stage_ends",
]

PANEL_INCHES = 2.4  # every panel is PANEL_INCHES square: (1 + min(blocks, 4)) x images * wrapped rows panels


class MapsError(SalientError, ValueError):
    """Bad input for the maps command (no gates, unreadable image, non-spatial gates in a picture)."""


def load_for_maps(spec: Optional[ModelSpec], checkpoint: Optional[str]) -> Tuple[nn.Module, dict]:
    """Model in eval mode and its data config (with a ``label``; ``trained``: the preprocessing a salient-train
    run used), from a salient-train checkpoint (its own options), a weights file loaded into ``spec``'s model,
    or ``spec`` alone."""
    if checkpoint:
        try:  # a salient-train checkpoint carries its own options; unreadable files fail here, with the reason
            run_spec, model, config = ModelSpec.from_checkpoint(checkpoint)
        except NotATrainingCheckpointError:
            run_spec = None  # a plain weights file: built into spec's model below
        if run_spec is not None:
            if spec is not None and spec.model != run_spec.model:
                raise MapsError(f"--model {spec.model} does not match the checkpoint's model {run_spec.model}")
            return model, {**config, "model": run_spec.model, "label": run_spec.label, "trained": True}
        if spec is None:
            raise MapsError("--model is needed with a weights file that is not a salient-train checkpoint")
        spec = spec.replace(pretrained=checkpoint)
    if spec is None:
        raise MapsError("give --model, --checkpoint, or both")
    model = spec.build().eval()
    config = with_channels(resolve_data_config({}, model=model), spec.in_chans)
    return model, {**config, "model": spec.model, "label": spec.label}


def with_channels(config: dict, in_chans: int) -> dict:
    """A timm data config for a model built with ``in_chans`` inputs (timm's cfgs are written for RGB and
    ``resolve_data_config`` keeps them so): the input size takes the model's channels, and a mean or std of
    another length becomes its average for every channel (a grayscale image under an RGB model's statistics)."""
    fixed = {**config, "input_size": (in_chans, *config["input_size"][1:])}
    for key in ("mean", "std"):
        values = tuple(config[key])
        if len(values) != in_chans:
            fixed[key] = (sum(values) / len(values),) * in_chans
    return fixed


def read_images(paths: Sequence[str], config: dict) -> Tuple[torch.Tensor, List[np.ndarray]]:
    """Batch (N, C, H, W) preprocessed as the model expects, and each image as the model sees it (H, W[, 3]) in 0..1."""
    chans = config["input_size"][0]
    transform = create_transform(
        **{k: config[k] for k in ("input_size", "mean", "std", "crop_pct", "interpolation") if k in config},
        is_training=False,
    )
    tensors = []
    for path in paths:
        try:
            with Image.open(path) as img:
                tensors.append(transform(img.convert("L" if chans == 1 else "RGB")))
        except (OSError, ValueError) as e:
            raise MapsError(f"cannot read image {path}: {e}") from e
    batch = torch.stack(tensors)
    mean = torch.tensor(config["mean"]).view(1, -1, 1, 1)
    std = torch.tensor(config["std"]).view(1, -1, 1, 1)
    shown = (batch * std + mean).clamp(0, 1)
    views = [v[0].numpy() if chans == 1 else v.permute(1, 2, 0).numpy() for v in shown]
    return batch, views


def _entropy(w: torch.Tensor) -> float:
    """Entropy of the map as a distribution over its positions, normalised to 1 for a uniform map."""
    p = w.flatten().clamp_min(0)
    total = p.sum()
    if total <= 0 or p.numel() < 2:
        return 0.0
    p = p / total
    return float(-(p * p.clamp_min(1e-12).log()).sum() / math.log(p.numel()))


def _spread(w: torch.Tensor) -> torch.Tensor:
    """Per image: std of a gate output (N, 1, H, W) over pixels, or (N, C, 1, 1) over channels."""
    flat = w.flatten(1)
    return flat.std(1) if flat.shape[1] > 1 else torch.zeros(flat.shape[0])


def gate_stats(
    gates: Dict[str, torch.Tensor],
    image_names: Sequence[str],
    neutral: Dict[str, float],
    predicted: Optional[Sequence[str]] = None,
) -> List[dict]:
    """Per image and block: shape, neutral value, min/mean/max/std, rel std, deviation from neutral, entropy; with
    ``predicted`` (the model's class name for each image), a ``predicted`` column after the image's name."""
    rows = []
    for i, image in enumerate(image_names):
        for block, g in gates.items():
            w, n = g[i], neutral[block]
            mean, std = float(w.mean()), float(_spread(g[i : i + 1])[0])
            rows.append(
                {
                    "image": image,
                    **({"predicted": predicted[i]} if predicted is not None else {}),
                    "block": block,
                    "kind": "spatial" if w.shape[0] == 1 else "channel",
                    "shape": "x".join(map(str, w.shape)),
                    "neutral": n,
                    "min": float(w.min()),
                    "mean": mean,
                    "max": float(w.max()),
                    "std": std,
                    "rel std": std / mean if mean > 0 else 0.0,
                    "mean dev": mean - n,
                    "mean |dev|": float((w - n).abs().mean()),
                    "entropy": _entropy(w),
                }
            )
    return rows


@torch.no_grad()
def gate_variation(model: nn.Module, batches: Iterable[torch.Tensor]) -> Dict[str, Dict[str, float]]:
    """Per block, averaged over every image of ``batches`` (in eval mode; the model's mode is restored): ``std`` of
    the gate over its pixels (channels for SE), ``rel std`` = that std / the gate's mean, and ``mean |dev|`` from
    the neutral value."""
    neutral = gate_neutrals(model)
    sums: Dict[str, torch.Tensor] = {}
    count = 0
    with training_mode(model, False), capture_gates(model) as gates:
        for x in batches:
            model(x)
            for block, g in gates.items():
                mean = g.flatten(1).mean(1)
                std = _spread(g)
                row = torch.stack(
                    [
                        std.sum(),
                        (std / mean.clamp_min(1e-12)).sum(),
                        (g - neutral[block]).abs().flatten(1).mean(1).sum(),
                    ]
                )
                sums[block] = sums.get(block, 0) + row.double()
            count += x.shape[0]
    return {block: dict(zip(("std", "rel std", "mean |dev|"), (s / count).tolist())) for block, s in sums.items()}


@torch.no_grad()
def localization(
    model: nn.Module, images: torch.Tensor, boxes: torch.Tensor, labels: Optional[torch.Tensor] = None, batch: int = 256
) -> Tuple[List[dict], Optional[float]]:
    """How well each spatial gate (salient, ssa, CBAM's spatial gate) of ``model`` points at the object, over
    ``images`` (N, C, H, W, preprocessed) with ``boxes`` (N, 4) in input pixels (``salient_analysis.localization``:
    pointing game and energy in box at the map's own resolution).

    Rows, each ``{"kind", "block", "map", "pointing game", "energy in box"}``: ``gate`` per gated block;
    ``features`` per stage's last residual block: the channel mean of its output's ``|activation|``, what the
    network's own features locate without any gate; and per map size ``reference`` (chance: random and constant
    maps; ceiling: the box itself) and ``baseline`` (input brightness, blurred brightness, centre prior).
    Also returns, given ``labels``, the model's top-1 (%) on these images. Eval mode; the mode is restored.
    Raises ``MapsError`` if the model has no spatial gate."""
    maps: Dict[str, List[torch.Tensor]] = {}
    correct = 0
    with training_mode(model, False), capture_gates(model) as gates:
        for start in range(0, len(images), batch):
            logits = model(images[start : start + batch])
            if labels is not None:
                correct += int((logits.argmax(1) == labels[start : start + batch]).sum())
            for block, g in gates.items():
                maps.setdefault(block, []).append(g)
    size = tuple(images.shape[-2:])
    spatial = {b: torch.cat(p) for b, p in maps.items()}
    spatial = {b: m for b, m in spatial.items() if m.shape[0] == len(images) and m.shape[1] == 1 and m[0].numel() > 1}
    if not spatial:
        raise MapsError("the model's gates are not spatial (SE-like channel gates): no map to localize")
    rows = [{"kind": "gate", "block": b, **_scores(m, boxes, size)} for b, m in spatial.items()]
    rows += [
        {"kind": "features", "block": b, **_scores(m, boxes, size)}
        for b, m in feature_maps(model, images, stage_ends(model)).items()
    ]
    for hw in sorted({tuple(m.shape[-2:]) for m in spatial.values()}, reverse=True):
        rows += [{"kind": "reference", "block": r.pop("name"), **r} for r in reference_rows(boxes, size, hw)]
        rows += [
            {"kind": "baseline", "block": name, **_scores(m, boxes, size)}
            for name, m in baseline_maps(images, hw).items()
        ]
    return rows, (100.0 * correct / len(images) if labels is not None else None)


def _scores(maps: torch.Tensor, boxes: torch.Tensor, size: Any) -> dict:
    row = score_row("", maps, boxes, size)
    row.pop("name")
    return row


def stage_ends(model: nn.Module) -> List[str]:
    """The last residual block of each stage (``layer1.1``, ``layer2.1``, ...), the modules whose output the
    ``features`` rows read."""
    last: Dict[int, str] = {}
    for block in find_residual_blocks(model):
        last[block.stage] = block.name
    return [last[s] for s in sorted(last)]


BOXED_DATASETS = ("cluttered-fashion-mnist", "fashion-mnist")


def boxed_test_images(
    dataset: str,
    config: dict,
    data_dir: Optional[str] = None,
    canvas: Optional[int] = None,
    clutter: Optional[int] = None,
    test_subset: Optional[int] = None,
) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, List[np.ndarray]]:
    """The test split of a data set with object boxes, preprocessed as ``config`` (the model's input size,
    mean, std) says: ``(images (N, C, H, W), labels (N,), boxes (N, 4) in input pixels, views in 0..1)``.
    ``cluttered-fashion-mnist`` (its default canvas and clutter unless given) or ``fashion-mnist`` with ``canvas`` (the
    item centred). Raises ``MapsError`` for another data set, a model with other input channels, or bad sizes."""
    if dataset not in BOXED_DATASETS:
        raise MapsError(f"{dataset} has no object boxes; valid: {', '.join(BOXED_DATASETS)} (with --canvas)")
    if dataset == "fashion-mnist" and not canvas:
        raise MapsError("fashion-mnist has object boxes only on a canvas: give --canvas (e.g. 64)")
    chans, height, width = config["input_size"]
    if chans != 1 or height != width:
        raise MapsError(f"{dataset} is 1-channel square images; the model takes {chans}x{height}x{width}")
    items = ItemOptions(canvas=canvas, clutter=clutter, test_subset=test_subset).for_dataset(dataset)
    try:  # the test split only: the preprocessing statistics come from the model's config
        images, labels, boxes = fashion_mnist_split(data_dir, "test", height, items)
    except DatasetError as e:
        raise MapsError(str(e)) from e
    shown = images.float() / 255
    if shown.shape[-1] != height:
        shown = F.interpolate(shown, size=(height, width), mode="bilinear", antialias=True, align_corners=False)
    mean, std = torch.tensor(config["mean"]).view(1, -1, 1, 1), torch.tensor(config["std"]).view(1, -1, 1, 1)
    assert boxes is not None  # both boxed data sets lay items on a canvas
    return (shown - mean) / std, labels, boxes, [v[0].clamp(0, 1).numpy() for v in shown]


def stage_blocks(names: Sequence[str]) -> List[str]:
    """The last gate of each residual stage (``layer1.1.se``, ``layer2.1.se``, ...; ``stages.0.1.attn_last`` for
    byobnet): gates named ``<block>.<slot>``, stages as ``salient_timm.surgery.residual_stages`` numbers them."""
    stages = residual_stages([name.rsplit(".", 1)[0] for name in names])
    last: Dict[int, str] = {}
    for name, stage in zip(names, stages):
        last[stage] = name
    return [last[s] for s in sorted(last)]


def _gate_range(model: nn.Module, name: str) -> float:
    gate = gate_modules(model)[name]
    return float(gate.scale) if isinstance(gate, ScaledSigmoid) else 1.0


MAX_GATE_COLUMNS = 4  # gate panels per figure row; more blocks wrap onto further rows


def _diverging(neutral: float, top: float) -> Dict[str, Any]:
    """imshow arguments: a diverging colormap centred on the gate's neutral value (white: the gate does nothing;
    red: it amplifies; blue: it suppresses), over the gate's range 0..top."""
    from matplotlib.colors import TwoSlopeNorm

    if not 0.0 < neutral < top:
        return dict(cmap="viridis", vmin=0.0, vmax=top)
    return dict(cmap="RdBu_r", norm=TwoSlopeNorm(vmin=0.0, vcenter=neutral, vmax=top))


def draw_maps(
    model: nn.Module,
    batch: torch.Tensor,
    views: List[np.ndarray],
    names: Sequence[str],
    out: str,
    all_blocks: bool = False,
    dpi: int = 100,
    title: str = "",
    boxes: Optional[torch.Tensor] = None,
) -> Tuple[Dict[str, torch.Tensor], List[str]]:
    """Forward ``batch``, capture the gates, draw the figure to ``out`` (.png or .pdf); ``boxes`` (N, 4) in input
    pixels: each image's object box, drawn on every panel of its row. Each image takes one row of its image and up
    to ``MAX_GATE_COLUMNS`` gates (more wrap onto further rows); the gates are coloured on a diverging map centred
    on their neutral value.

    Returns the gates and the blocks drawn."""
    matplotlib = require("matplotlib", "plot", "the maps figure")
    matplotlib.use("Agg")
    import matplotlib.patches
    import matplotlib.pyplot as plt

    with torch.no_grad(), capture_gates(model) as gates:
        model(batch)
    neutral = gate_neutrals(model)
    blocks = list(gates) if all_blocks else stage_blocks(list(gates))
    flat = [b for b in blocks if gates[b].shape[1] != 1]
    if flat:
        raise MapsError(
            f"{flat[0]} gates channels ({'x'.join(map(str, gates[flat[0]].shape[1:]))}), not pixels: "
            "no spatial map to draw; use --format json for its statistics"
        )
    per_row = min(len(blocks), MAX_GATE_COLUMNS)  # wrap: each image takes ceil(blocks / per_row) rows
    chunks = [blocks[i : i + per_row] for i in range(0, len(blocks), per_row)]
    rows, cols = len(views) * len(chunks), 1 + per_row
    fig, axes = plt.subplots(rows, cols, figsize=(cols * PANEL_INCHES, rows * PANEL_INCHES), squeeze=False)
    cmap_img = "gray" if views[0].ndim == 2 else None

    def outline(ax: Any, r: int) -> None:
        if boxes is not None:
            x0, y0, x1, y1 = (float(v) for v in boxes[r])
            rect = matplotlib.patches.Rectangle((x0 - 0.5, y0 - 0.5), x1 - x0, y1 - y0, fill=False, ec="k", lw=1)
            ax.add_patch(rect)

    for r, view in enumerate(views):
        for k, chunk in enumerate(chunks):
            row = axes[r * len(chunks) + k]
            row[0].imshow(view, cmap=cmap_img, vmin=0, vmax=1)
            row[0].set_title(os.path.basename(names[r]) + (f" ({k + 1}/{len(chunks)})" if k else ""), fontsize=7)
            outline(row[0], r)
            for c, block in enumerate(chunk, start=1):
                g = gates[block][r : r + 1]
                up = F.interpolate(g, size=view.shape[:2], mode="bilinear", align_corners=False)[0, 0].numpy()
                ax = row[c]
                ax.imshow(view, cmap=cmap_img, vmin=0, vmax=1)
                im = ax.imshow(up, alpha=0.6, **_diverging(neutral[block], _gate_range(model, block)))
                fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04).ax.tick_params(labelsize=6)
                outline(ax, r)
                ax.set_title(
                    f"{block} ({g.shape[2]}x{g.shape[3]})\nmin {g.min():.2f} mean {g.mean():.2f} max {g.max():.2f}",
                    fontsize=7,
                )
            for ax in row[1 + len(chunk) :]:
                ax.set_axis_off()
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    if title:
        fig.suptitle(title, fontsize=8)
    fig.subplots_adjust(left=0.02, right=0.96, top=0.88, bottom=0.02, wspace=0.35, hspace=0.35)
    fig.savefig(out, dpi=dpi)
    plt.close(fig)
    return gates, blocks
