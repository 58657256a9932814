"""``salient-analyze maps``: every gate's map for each image (statistics, and a figure), or, on a test split with
object boxes, how well each gate localizes the object against chance, ceiling, baselines and the network's own
features."""

import os
from typing import Optional, Sequence

import torch

from salient_timm import capture_gates, gate_neutrals
from salient_timm.spec import ModelSpec

from ..maps.figure import draw_maps
from ..maps.io import boxed_test_images, load_for_maps, read_images
from ..maps.metrics import gate_stats, localization
from ..render import Report, Table

__all__ = ["maps_report", "localization_report", "MAPS_NOTES", "LOCALIZATION_NOTE"]

MAPS_NOTES = [
    "neutral: the gate's value for a zero input (0.5 for sigmoid, 1 for an "
    "identity-started 2*sigmoid); dev = gate - neutral; rel std = std / mean",
    "entropy: of the map as a distribution over its positions, 1 = uniform",
]
LOCALIZATION_NOTE = (
    "scored at each map's own resolution (salient_analysis.localization): pointing game = the chance that a "
    "point in the map's maximal cell(s) lies in the object box; energy in box = the share of the map's mass "
    "above its minimum inside the box. Read a gate against the rows of its map size: chance (random and "
    "constant maps), ceiling (the box itself), the baselines, and the network's own features (channel mean "
    "of |activation| at each stage's last block), which any early feature map already localizes"
)


def _loaded(spec: Optional[ModelSpec], checkpoint: Optional[str], input_size: Optional[Sequence[int]]):
    net, config = load_for_maps(spec, checkpoint)
    return net, ({**config, "input_size": input_size} if input_size else config)


def maps_report(
    spec: Optional[ModelSpec],
    images: Sequence[str],
    checkpoint: Optional[str] = None,
    input_size: Optional[Sequence[int]] = None,
    out: Optional[str] = None,
    all_blocks: bool = False,
    dpi: int = 100,
) -> Report:
    """Statistics of every gate on each image (with the predicted class where the run or cfg names classes);
    ``out``: the figure too (.png or .pdf). Model as ``export_report`` loads it; ``input_size`` (C, H, W) overrides
    the data config's."""
    net, config = _loaded(spec, checkpoint, input_size)
    label = config["label"]
    batch, views = read_images(images, config)
    if out:
        gates, _ = draw_maps(net, batch, views, images, out, all_blocks=all_blocks, dpi=dpi, title=label)
    else:
        with torch.no_grad(), capture_gates(net) as gates:
            net(batch)
    classes = config.get("label_names")
    predicted = None
    if classes:  # a salient-train run's class names (or a timm cfg's): what the model predicts for each image
        with torch.no_grad():
            predicted = [classes[k] if k < len(classes) else str(k) for k in net(batch).argmax(1).tolist()]
    stats = gate_stats(gates, [os.path.basename(p) for p in images], gate_neutrals(net), predicted)
    notes = [f"figure written to {out}"] if out else []
    return Report("maps", [Table(f"Gate statistics of {label}", list(stats[0]), stats)], notes=notes + MAPS_NOTES)


def localization_report(
    spec: Optional[ModelSpec],
    dataset: str,
    checkpoint: Optional[str] = None,
    input_size: Optional[Sequence[int]] = None,
    data_dir: Optional[str] = None,
    canvas: Optional[int] = None,
    clutter: Optional[int] = None,
    test_subset: Optional[int] = None,
    rows: int = 6,
    out: Optional[str] = None,
    all_blocks: bool = False,
    dpi: int = 100,
) -> Report:
    """Pointing game and energy in box of every spatial gate over ``dataset``'s test split (``boxed_test_images``),
    beside chance, ceiling, baselines and the network's own features; ``out``: a figure of the first ``rows``."""
    net, config = _loaded(spec, checkpoint, input_size)
    x, labels, boxes, views = boxed_test_images(dataset, config, data_dir, canvas, clutter, test_subset)
    table, top1 = localization(net, x, boxes, labels)
    notes = [f"{len(labels)} test images of {dataset}; the model's top-1 on them: {top1:.2f}%", LOCALIZATION_NOTE]
    if out:
        classes = config.get("label_names") or [str(k) for k in range(int(labels.max()) + 1)]
        names = [f"test {i}: {classes[int(labels[i])]}" for i in range(min(rows, len(labels)))]
        n = len(names)
        draw_maps(net, x[:n], views[:n], names, out, all_blocks, dpi, config["label"], boxes[:n])
        notes.append(f"figure written to {out}")
    return Report("maps", [Table(f"Localization of {config['label']}", list(table[0]), table)], notes=notes)
