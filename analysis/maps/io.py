"""Reading for the maps: the model and its data config, image files, and boxed test splits, each preprocessed as
the model expects (timm's ``create_transform`` from the data config; a salient-train checkpoint carries its own)."""

from typing import List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from timm.data import create_transform, resolve_data_config
from torch import nn

from salient_timm.data import DatasetError, ItemOptions, fashion_mnist_split
from salient_timm.io.weights import NotATrainingCheckpointError
from salient_timm.spec import ModelSpec

from .errors import MapsError

__all__ = ["BOXED_DATASETS", "load_for_maps", "with_channels", "read_images", "boxed_test_images"]

BOXED_DATASETS = ("cluttered-fashion-mnist", "fashion-mnist")


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
