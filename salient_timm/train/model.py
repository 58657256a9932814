"""The model salient-train trains: its options turned into a ``salient_timm.ModelSpec`` (the one build seam)."""

import argparse
import math
import os
from typing import Any, Dict, Optional, Tuple

import timm
from torch import nn

from ..errors import first_line
from ..io.weights import CheckpointError, read_state_dict
from ..spec import ModelSpec, local_weights_overlay
from .config import run_label, weights_source

__all__ = ["build_model", "load_trained", "pretrained_head_classes", "final_feature_size"]


def pretrained_head_classes(args: argparse.Namespace) -> Optional[int]:
    """Classes of the head the run's pretrained weights carry (None: no head, or no pretrained weights)."""
    source = weights_source(args)
    if not source:
        return None
    if os.path.isfile(source):
        return local_weights_overlay(source, args.model).get("num_classes")
    cfg = timm.models.get_pretrained_cfg(f"{timm.models.split_model_name_tag(args.model)[0]}.{source}")
    return cfg.num_classes if cfg else None


def final_feature_size(model: nn.Module, img_size: int) -> Optional[int]:
    """Side of the last stage's feature map for ``img_size`` inputs, from timm's ``feature_info`` (None if absent)."""
    info = getattr(model, "feature_info", None)
    if not info:
        return None
    return math.ceil(img_size / info[-1]["reduction"])


def build_model(args: argparse.Namespace, num_classes: int, in_chans: int, load_weights: bool = True) -> nn.Module:
    """The run's model (``ModelSpec.from_train_args``): with pretrained weights and ``--attn`` a retrofit whose
    attention starts at the identity or near it; ``--initial-checkpoint`` loaded strictly after it is built.
    ``load_weights=False``: the same architecture without reading any weights, to receive a checkpoint of this run."""
    model = ModelSpec.from_train_args(args, num_classes, in_chans).build(load_weights=load_weights)
    initial = getattr(args, "initial_checkpoint", None)
    if initial and load_weights:
        state = read_state_dict(initial)
        try:
            model.load_state_dict(state)
        except RuntimeError as e:
            raise CheckpointError(
                f"--initial-checkpoint {initial} is not a checkpoint of this model ({first_line(e)}); "
                "for weights to adapt (another head, new attention), give --pretrained-path"
            ) from e
    return model


def load_trained(path: str) -> Tuple[nn.Module, Dict[str, Any]]:
    """A salient-train checkpoint's model in eval mode, and a data config (input size, mean, std, model, label)."""
    spec, model, data_config = ModelSpec.from_checkpoint(path)
    args = argparse.Namespace(model=spec.model, attn=spec.attn, position=spec.position, pretrained=spec.pretrained)
    return model, {"model": spec.model, "label": run_label(args), **data_config}
