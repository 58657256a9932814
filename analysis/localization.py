"""Does a spatial map point at the object? Metrics scored at the map's own resolution, with chance and ceiling
computed by the same code on the same boxes.

An h x w map over an H x W input has h x w cells; ``box_cover`` gives, per image, the share of each cell that the
object box covers (exact areas, 0..1). Both metrics read the map only through that cover, never through an
upsampled copy (bilinear upsampling and a first-maximum rule made random maps score up to 5x off chance):

| metric | definition | a random or constant map | the oracle map (the cover itself) | the ideal gate's inverse |
|---|---|---|---|---|
| pointing game | the chance that a point drawn uniformly in the map's maximal cell(s) lies in the box (tied cells share) | the box share | the ceiling at this map size | low |
| energy in box | the share of the map's mass above its own minimum that lies in the box (each cell's mass x its cover) | the box share (a constant map counts as it) | the ceiling | near 0 |

Chance is measured, not assumed: ``reference_rows`` scores iid random maps and a constant map; the ceiling is the
oracle map's score (at 2x2 a 28 px box on a 64 px canvas cannot fill a cell). Baselines a gate must beat, scored
the same way: input brightness and brightness blurred at the map's scale (the item is bright on black, and so is
the clutter), a centre prior, and (``feature_maps``) a network's own activations, the channel mean of
``|activation|`` at a block's output: the gate-free control. Source of the pointing game: Zhang et al. 2016, "Top-
down Neural Attention by Excitation Backprop"; the exact-area cover replaces its pixel test.
"""

from typing import Any, Dict, List, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from salient_timm.errors import SalientError
from salient_timm.module_mode import training_mode

__all__ = [
    "LocalizationError",
    "box_cover",
    "box_share",
    "pointing_game",
    "energy_in_box",
    "reference_rows",
    "baseline_maps",
    "feature_maps",
    "score_row",
]


class LocalizationError(SalientError, ValueError):
    """Maps or boxes of the wrong shape."""


def _hw(input_size: Any) -> Tuple[int, int]:
    return (input_size, input_size) if isinstance(input_size, int) else tuple(input_size)[-2:]  # type: ignore[return-value]


def _check(maps: torch.Tensor, boxes: torch.Tensor) -> None:
    if maps.ndim != 4 or maps.shape[1] != 1:
        raise LocalizationError(f"maps must be (N, 1, h, w) spatial maps, got {tuple(maps.shape)}")
    if boxes.shape != (maps.shape[0], 4):
        raise LocalizationError(
            f"boxes must be (N, 4) = ({maps.shape[0]}, 4) as x0, y0, x1, y1, got {tuple(boxes.shape)}"
        )


def _overlap(lo: torch.Tensor, hi: torch.Tensor, size: int, cells: int) -> torch.Tensor:
    """(N, cells): the share of each of ``cells`` equal intervals of [0, size) that [lo, hi) covers."""
    edges = torch.linspace(0, size, cells + 1, dtype=torch.float64)
    left, right = edges[:-1][None, :], edges[1:][None, :]
    inter = (torch.minimum(hi[:, None], right) - torch.maximum(lo[:, None], left)).clamp_min(0)
    return inter / (right - left)


def box_cover(boxes: torch.Tensor, input_size: Any, map_size: Tuple[int, int]) -> torch.Tensor:
    """(N, h, w) float64: the share of each map cell covered by each image's box (``x0, y0, x1, y1`` in input
    pixels, x1 and y1 exclusive), for an h x w map laid evenly over the input."""
    height, width = _hw(input_size)
    b = boxes.double()
    ys = _overlap(b[:, 1], b[:, 3], height, map_size[0])
    xs = _overlap(b[:, 0], b[:, 2], width, map_size[1])
    return ys[:, :, None] * xs[:, None, :]


def box_share(boxes: torch.Tensor, input_size: Any) -> float:
    """Mean share of the input that the boxes cover: what random and constant maps score on both metrics."""
    height, width = _hw(input_size)
    b = boxes.double()
    return float(((b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])).mean() / (height * width))


def pointing_game(maps: torch.Tensor, boxes: torch.Tensor, input_size: Any) -> float:
    """Mean over images of the box's cover of the map's maximal cells (averaged over tied maxima): the chance that
    a point drawn uniformly in the map's peak lies in the box. ``maps`` (N, 1, h, w); ``boxes`` (N, 4) in input
    pixels; ``input_size`` H, (H, W) or (C, H, W). Raises ``LocalizationError`` for other shapes."""
    _check(maps, boxes)
    cover = box_cover(boxes, input_size, tuple(maps.shape[-2:])).flatten(1)
    m = maps.flatten(1).double()
    peak = (m == m.max(1, keepdim=True).values).double()
    return float(((peak * cover).sum(1) / peak.sum(1)).mean())


def energy_in_box(maps: torch.Tensor, boxes: torch.Tensor, input_size: Any) -> float:
    """Mean over images of the share of the map's mass above its own minimum that lies in the box (cell mass x
    the box's cover of the cell). A map that is constant has no mass: it scores its image's box share (chance).
    Shapes as in ``pointing_game``."""
    _check(maps, boxes)
    cover = box_cover(boxes, input_size, tuple(maps.shape[-2:])).flatten(1)
    m = maps.flatten(1).double()
    mass = m - m.min(1, keepdim=True).values
    total = mass.sum(1)
    height, width = _hw(input_size)
    b = boxes.double()
    area = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1]) / (height * width)
    share = (mass * cover).sum(1) / total.clamp_min(1e-300)
    return float(torch.where(total > 0, share, area).mean())


def score_row(name: str, maps: torch.Tensor, boxes: torch.Tensor, input_size: Any) -> Dict[str, Any]:
    return {
        "map": f"{maps.shape[-2]}x{maps.shape[-1]}",
        "name": name,
        "pointing game": pointing_game(maps, boxes, input_size),
        "energy in box": energy_in_box(maps, boxes, input_size),
    }


def reference_rows(boxes: torch.Tensor, input_size: Any, map_size: Tuple[int, int], draws: int = 8) -> List[dict]:
    """Chance (``draws`` sets of iid uniform random maps, averaged; a constant map) and ceiling (the oracle map:
    the box's cover itself) at ``map_size``, scored by the metrics above on these boxes."""
    g = torch.Generator().manual_seed(0)
    n = len(boxes)
    random = [score_row("random", torch.rand(n, 1, *map_size, generator=g), boxes, input_size) for _ in range(draws)]
    rows = [
        {
            "map": random[0]["map"],
            "name": "chance (random maps)",
            "pointing game": sum(r["pointing game"] for r in random) / draws,
            "energy in box": sum(r["energy in box"] for r in random) / draws,
        },
        score_row("chance (constant map)", torch.zeros(n, 1, *map_size), boxes, input_size),
        score_row("ceiling (the box itself)", box_cover(boxes, input_size, map_size)[:, None], boxes, input_size),
    ]
    return rows


def baseline_maps(images: torch.Tensor, map_size: Tuple[int, int]) -> Dict[str, torch.Tensor]:
    """Maps any gate should beat, at ``map_size``: the input's brightness averaged to the cells, the same after a
    Gaussian blur whose sigma is one cell (its kernel truncated at 3 sigma), and a centre prior (cells nearer the
    centre score higher).

    The blur runs on the brightness averaged to 4 pixels a cell (sigma 4 there), then pooled to the cells: the
    same map to within the blur's own smoothness, at a cost that does not grow with the input size."""
    bright = images.mean(1, keepdim=True).double()
    fine = (4 * map_size[0], 4 * map_size[1])
    small = F.adaptive_avg_pool2d(bright, fine) if fine[0] < bright.shape[-2] else bright
    sigma = small.shape[-2] / map_size[0]
    radius = int(3 * sigma)
    t = torch.arange(-radius, radius + 1, dtype=torch.float64)
    kernel = torch.exp(-0.5 * (t / sigma) ** 2)
    kernel = kernel / kernel.sum()
    blurred = torch.cat(
        [
            F.conv2d(
                F.conv2d(F.pad(part, (radius,) * 4, mode="replicate"), kernel.view(1, 1, 1, -1)),
                kernel.view(1, 1, -1, 1),
            )
            for part in small.split(512)
        ]
    )
    ys = (torch.arange(map_size[0], dtype=torch.float64) + 0.5) / map_size[0] - 0.5
    xs = (torch.arange(map_size[1], dtype=torch.float64) + 0.5) / map_size[1] - 0.5
    centre = -(ys[:, None] ** 2 + xs[None, :] ** 2).sqrt()
    return {
        "input brightness": F.adaptive_avg_pool2d(bright, map_size),
        "blurred brightness": F.adaptive_avg_pool2d(blurred, map_size),
        "centre prior": centre.expand(len(images), 1, *map_size),
    }


@torch.no_grad()
def feature_maps(
    model: nn.Module, images: torch.Tensor, modules: Sequence[str], batch: int = 256
) -> Dict[str, torch.Tensor]:
    """``{module name: (N, 1, h, w)}``: the channel mean of ``|output|`` of each named module, the usual
    class-agnostic activation map (the gate-free control when read off a network without gates). Eval mode;
    the model's mode is restored."""
    outputs: Dict[str, List[torch.Tensor]] = {name: [] for name in modules}
    handles = [
        model.get_submodule(name).register_forward_hook(
            lambda m, a, out, name=name: outputs[name].append(out.detach().abs().mean(1, keepdim=True).float())
        )
        for name in modules
    ]
    try:
        with training_mode(model, False):
            for start in range(0, len(images), batch):
                model(images[start : start + batch])
    finally:
        for h in handles:
            h.remove()
    return {name: torch.cat(parts) for name, parts in outputs.items()}
