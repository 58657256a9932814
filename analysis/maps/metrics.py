"""Numbers from the gates: statistics per image and block, variation over a data set, and localization scores.

Statistics are read against each gate's neutral value ``gate(0)`` (0.5 for the seed's sigmoid, 1.0 for an
identity-started ``2*sigmoid`` gate): ``mean |dev|`` is how far the gate is from doing nothing, ``rel std``
(std / mean) how much it modulates the features from pixel to pixel (or channel to channel for SE), whatever the
gate's scale. Localization, on images with a known object box, scores every gate, the network's own stage-end
features, chance, ceiling and baselines with ``salient_analysis.localization`` (pointing game and energy in box at
the map's own resolution).
"""

import math
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

import torch
from torch import nn

from salient_timm import capture_gates, find_residual_blocks
from salient_timm.gates import gate_neutrals
from salient_timm.module_mode import training_mode
from salient_timm.surgery import residual_stages

from ..localization import baseline_maps, feature_maps, reference_rows, score_row
from .errors import MapsError

__all__ = ["gate_stats", "gate_variation", "localization", "stage_ends", "stage_blocks"]


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


def stage_blocks(names: Sequence[str]) -> List[str]:
    """The last gate of each residual stage (``layer1.1.se``, ``layer2.1.se``, ...; ``stages.0.1.attn_last`` for
    byobnet): gates named ``<block>.<slot>``, stages as ``salient_timm.surgery.residual_stages`` numbers them."""
    stages = residual_stages([name.rsplit(".", 1)[0] for name in names])
    last: Dict[int, str] = {}
    for name, stage in zip(names, stages):
        last[stage] = name
    return [last[s] for s in sorted(last)]
