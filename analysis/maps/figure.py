"""The maps figure: one row per image, the input as the model sees it, then one overlay per stage (its last block's
gate) or per block: the gate map upsampled onto the image on a diverging colormap centred on the gate's neutral
value, with a colour bar and the map's min/mean/max."""

import os
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from salient_timm import capture_gates
from salient_timm.extras import require
from salient_timm.gates import gate_modules, gate_neutrals
from salient_timm.layers import ScaledSigmoid

from .errors import MapsError
from .metrics import stage_blocks

__all__ = ["PANEL_INCHES", "MAX_GATE_COLUMNS", "draw_maps"]

PANEL_INCHES = 2.4  # every panel is PANEL_INCHES square: (1 + min(blocks, 4)) x images * wrapped rows panels
MAX_GATE_COLUMNS = 4  # gate panels per figure row; more blocks wrap onto further rows


def _gate_range(model: nn.Module, name: str) -> float:
    gate = gate_modules(model)[name]
    return float(gate.scale) if isinstance(gate, ScaledSigmoid) else 1.0


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
    for r, view in enumerate(views):
        box = None if boxes is None else tuple(float(v) for v in boxes[r])
        for k, chunk in enumerate(chunks):
            row = axes[r * len(chunks) + k]
            row[0].imshow(view, cmap=cmap_img, vmin=0, vmax=1)
            row[0].set_title(os.path.basename(names[r]) + (f" ({k + 1}/{len(chunks)})" if k else ""), fontsize=7)
            _outline(row[0], box)
            for c, block in enumerate(chunk, start=1):
                colours = _diverging(neutral[block], _gate_range(model, block))
                _gate_panel(fig, row[c], view, cmap_img, gates[block][r : r + 1], block, colours)
                _outline(row[c], box)
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


def _outline(ax: Any, box: Optional[Tuple[float, ...]]) -> None:
    """The object's box (x0, y0, x1, y1 in input pixels) drawn on a panel; nothing without one."""
    if box is not None:
        import matplotlib.patches

        x0, y0, x1, y1 = box
        ax.add_patch(matplotlib.patches.Rectangle((x0 - 0.5, y0 - 0.5), x1 - x0, y1 - y0, fill=False, ec="k", lw=1))


def _gate_panel(
    fig: Any, ax: Any, view: np.ndarray, cmap_img: Optional[str], g: torch.Tensor, block: str, colours: Dict[str, Any]
) -> None:
    """One gate map ``g`` (1, 1, h, w) upsampled over the image ``view``, with its colour bar and min/mean/max."""
    up = F.interpolate(g, size=view.shape[:2], mode="bilinear", align_corners=False)[0, 0].numpy()
    ax.imshow(view, cmap=cmap_img, vmin=0, vmax=1)
    im = ax.imshow(up, alpha=0.6, **colours)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04).ax.tick_params(labelsize=6)
    ax.set_title(
        f"{block} ({g.shape[2]}x{g.shape[3]})\nmin {g.min():.2f} mean {g.mean():.2f} max {g.max():.2f}", fontsize=7
    )
