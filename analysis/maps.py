"""Saliency maps: run images through a model, record every gate, summarise and draw them.

Images are read with Pillow and preprocessed with timm's ``create_transform`` from the model's
data config (a salient-train checkpoint carries its input size, channels, mean and std; other
models use their timm pretrained cfg). The figure has one row per image: the input as the model
sees it, then one overlay per stage (its last block's gate) or per block (``all_blocks``): the
gate map upsampled onto the image, with a colour bar and the map's min/mean/max.

Statistics are read against each gate's neutral value ``gate(0)`` (0.5 for the seed's sigmoid,
1.0 for an identity-started ``2*sigmoid`` gate): ``mean |dev|`` is how far the gate is from
doing nothing, ``rel std`` (std / mean) how much it modulates the features from pixel to pixel
(or channel to channel for SE), whatever the gate's scale.
"""

import math
import os
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from timm.data import create_transform, resolve_data_config
from torch import nn

from salient_timm import capture_gates
from salient_timm.blocks import ScaledSigmoid
from salient_timm.errors import SalientError
from salient_timm.extras import require
from salient_timm.gates import gate_neutrals
from salient_timm.spec import ModelSpec
from salient_timm.surgery import attention_modules
from salient_timm.weights import NotATrainingCheckpointError

__all__ = [
    "PANEL_INCHES",
    "load_for_maps",
    "read_images",
    "gate_stats",
    "gate_variation",
    "stage_blocks",
    "draw_maps",
    "MapsError",
]

PANEL_INCHES = 2.4  # every panel is PANEL_INCHES square: a figure is (1 + blocks) x images panels


class MapsError(SalientError, ValueError):
    """Bad input for the maps command (no gates, unreadable image, non-spatial gates in a picture)."""


def load_for_maps(spec: Optional[ModelSpec], checkpoint: Optional[str]) -> Tuple[nn.Module, dict]:
    """Model in eval mode and its data config (with a ``label``), from a salient-train checkpoint (its own
    options), a weights file loaded into ``spec``'s model, or ``spec`` alone."""
    if checkpoint:
        try:  # a salient-train checkpoint carries its own options; unreadable files fail here, with the reason
            run_spec, model, config = ModelSpec.from_checkpoint(checkpoint)
        except NotATrainingCheckpointError:
            run_spec = None  # a plain weights file: built into spec's model below
        if run_spec is not None:
            if spec is not None and spec.model != run_spec.model:
                raise MapsError(f"--model {spec.model} does not match the checkpoint's model {run_spec.model}")
            return model, {**config, "model": run_spec.model, "label": run_spec.label}
        if spec is None:
            raise MapsError("--model is needed with a weights file that is not a salient-train checkpoint")
        spec = spec.replace(pretrained=checkpoint)
    if spec is None:
        raise MapsError("give --model, --checkpoint, or both")
    model = spec.build().eval()
    return model, {**resolve_data_config({}, model=model), "model": spec.model, "label": spec.label}


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


def gate_stats(gates: Dict[str, torch.Tensor], image_names: Sequence[str], neutral: Dict[str, float]) -> List[dict]:
    """Per image and block: shape, neutral value, min/mean/max/std, rel std, deviation from neutral, entropy."""
    rows = []
    for i, image in enumerate(image_names):
        for block, g in gates.items():
            w, n = g[i], neutral[block]
            mean, std = float(w.mean()), float(_spread(g[i : i + 1])[0])
            rows.append(
                {
                    "image": image,
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
    was_training = model.training
    model.eval()
    try:
        with capture_gates(model) as gates:
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
    finally:
        model.train(was_training)
    return {block: dict(zip(("std", "rel std", "mean |dev|"), (s / count).tolist())) for block, s in sums.items()}


def stage_blocks(names: Sequence[str]) -> List[str]:
    """The last gated block of each stage (``layer1.1.se``, ``layer2.1.se``, ...)."""
    last: Dict[str, str] = {}
    for name in names:
        last[name.split(".")[0]] = name
    return list(last.values())


def _gate_range(model: nn.Module, name: str) -> float:
    gate = dict(attention_modules(model))[name].gate
    return float(gate.scale) if isinstance(gate, ScaledSigmoid) else 1.0


def draw_maps(
    model: nn.Module,
    batch: torch.Tensor,
    views: List[np.ndarray],
    names: Sequence[str],
    out: str,
    all_blocks: bool = False,
    dpi: int = 100,
    title: str = "",
) -> Tuple[Dict[str, torch.Tensor], List[str]]:
    """Forward ``batch``, capture the gates, draw the figure to ``out`` (.png or .pdf).

    Returns the gates and the blocks drawn."""
    matplotlib = require("matplotlib", "plot", "the maps figure")
    matplotlib.use("Agg")
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
    rows, cols = len(views), 1 + len(blocks)
    fig, axes = plt.subplots(rows, cols, figsize=(cols * PANEL_INCHES, rows * PANEL_INCHES), squeeze=False)
    cmap_img = "gray" if views[0].ndim == 2 else None
    for r, view in enumerate(views):
        axes[r][0].imshow(view, cmap=cmap_img, vmin=0, vmax=1)
        axes[r][0].set_title(os.path.basename(names[r]), fontsize=7)
        for c, block in enumerate(blocks, start=1):
            g = gates[block][r : r + 1]
            up = F.interpolate(g, size=view.shape[:2], mode="bilinear", align_corners=False)[0, 0].numpy()
            ax = axes[r][c]
            ax.imshow(view, cmap=cmap_img, vmin=0, vmax=1)
            im = ax.imshow(up, cmap="jet", alpha=0.5, vmin=0, vmax=_gate_range(model, block))
            fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04).ax.tick_params(labelsize=6)
            ax.set_title(
                f"{block} ({g.shape[2]}x{g.shape[3]})\nmin {g.min():.2f} mean {g.mean():.2f} max {g.max():.2f}"
                f" | neutral {neutral[block]:g}",
                fontsize=6,
            )
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    if title:
        fig.suptitle(title, fontsize=8)
    fig.subplots_adjust(left=0.02, right=0.96, top=0.88, bottom=0.02, wspace=0.35, hspace=0.35)
    fig.savefig(out, dpi=dpi)
    plt.close(fig)
    return gates, blocks
