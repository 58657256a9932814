"""Build the model salient-train trains: timm model, optional CIFAR stem, pretrained weights, attention."""
import argparse
import functools
import logging
import math
import os
from typing import Any, Dict, Optional, Tuple

import timm
from timm.layers import freeze_batch_norm_2d
from timm.models import load_pretrained
from torch import nn

from ..salient_resnet import VARIANTS, fill_attention_keys
from ..weights import CheckpointError, CheckpointNotFoundError, read_state_dict
from ..stem import convert_to_cifar_stem, has_cifar_stem
from ..surgery import inject_attention
from .checkpoint import load_checkpoint
from .config import run_label

__all__ = ["build_model", "load_trained", "pretrained_head_classes", "final_feature_size"]

_logger = logging.getLogger(__name__)


def _local_overlay(path: str, model: str) -> dict:
    """pretrained_cfg overlay for a local file, with num_classes/in_chans read from the file itself.

    timm drops a checkpoint's head whenever its cfg's num_classes differs from the model's;
    stating the file's own head size keeps a fine-tuned head when sizes agree. The file is read once
    per (path, size, modification time): building the model and labelling step 0 share the result.
    """
    stat = os.stat(path)
    return dict(_read_overlay(path, stat.st_size, stat.st_mtime_ns, model))


@functools.lru_cache(maxsize=4)
def _read_overlay(path: str, size: int, mtime_ns: int, model: str) -> tuple:
    state = read_state_dict(path)  # timm's reader, with a clear CheckpointError for unusable files
    overlay = dict(file=path)
    cfg = timm.models.get_pretrained_cfg(model)
    head = f"{(cfg.classifier if cfg else None) or 'fc'}.weight"
    first = f"{(cfg.first_conv if cfg else None) or 'conv1'}.weight"
    if head in state:
        overlay["num_classes"] = state[head].shape[0]
    if first in state and state[first].ndim == 4:
        overlay["input_size"] = (state[first].shape[1], *(cfg.input_size[1:] if cfg else (224, 224)))
    return tuple(overlay.items())


def pretrained_head_classes(args: argparse.Namespace) -> Optional[int]:
    """Classes of the head that ``--pretrained`` carries (None: no head, or no pretrained weights)."""
    if not args.pretrained:
        return None
    if os.path.isfile(args.pretrained):
        return _local_overlay(args.pretrained, args.model).get("num_classes")
    cfg = timm.models.get_pretrained_cfg(f"{args.model}.{args.pretrained}")
    return cfg.num_classes if cfg else None


def final_feature_size(model: nn.Module, img_size: int) -> Optional[int]:
    """Side of the last stage's feature map for ``img_size`` inputs, from timm's ``feature_info`` (None if absent)."""
    info = getattr(model, "feature_info", None)
    if not info:
        return None
    return math.ceil(img_size / info[-1]["reduction"])


def _create_from_hub(name: str, kwargs: Dict[str, Any]) -> nn.Module:
    """``timm.create_model`` for a pretrained tag; any failure (unknown tag, no network) is one CheckpointError."""
    tag = kwargs["pretrained_cfg"]
    hub_logger = logging.getLogger("huggingface_hub")
    level = hub_logger.level
    hub_logger.setLevel(logging.ERROR)  # no page of retry warnings before the one-line error
    try:
        model = timm.create_model(name, **kwargs)
        load_pretrained(model, num_classes=kwargs["num_classes"], in_chans=kwargs["in_chans"],
                        filter_fn=fill_attention_keys)
        return model
    except CheckpointError:
        raise
    except Exception as e:  # noqa: BLE001  unknown tag, offline, hub errors
        reason = (str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__).rstrip(".")
        if "Invalid pretrained tag" in reason:
            tags = [t.split(".", 1)[1] for t in timm.list_pretrained(f"{name}.*")]
            raise CheckpointError(f"unknown pretrained tag {tag!r} for {name}; valid: {', '.join(tags) or 'none'}") from e
        raise CheckpointError(f"could not get pretrained weights {name}.{tag}: {reason}. Without network access, "
                              "pass a local weights file to --pretrained instead") from e
    finally:
        hub_logger.setLevel(level)


def build_model(args: argparse.Namespace, num_classes: int, in_chans: int, load_weights: bool = True) -> nn.Module:
    """timm model ``args.model`` for ``num_classes``/``in_chans``, retrofitted with ``args.attn``.

    Order: build, CIFAR stem, pretrained weights (timm's loader with ``fill_attention_keys``:
    strict, clear errors), then attention. With ``--pretrained`` (a file or a timm tag) the
    attention starts as the identity (``--attn-init-gain 0``: exactly, so predictions at step 0 are the
    pretrained model's) or near it (the default, see ``salient_timm.retrofit``).
    ``load_weights=False`` builds the same architecture (identity-style gates included) without
    reading ``--pretrained``, to receive a checkpoint of this run.
    """
    kwargs = dict(num_classes=num_classes, in_chans=in_chans)
    if args.cifar_stem and args.model in VARIANTS:
        kwargs["cifar_stem"] = True
    if args.pretrained and load_weights:
        if os.path.isfile(args.pretrained):
            kwargs["pretrained_cfg_overlay"] = _local_overlay(args.pretrained, args.model)
        elif os.path.sep in args.pretrained or args.pretrained.endswith((".pth", ".pt", ".safetensors", ".bin")):
            raise CheckpointNotFoundError(f"--pretrained file not found: {args.pretrained}")
        else:
            kwargs["pretrained_cfg"] = args.pretrained
    if "pretrained_cfg" in kwargs:  # a timm tag: downloaded through the Hugging Face Hub
        model = _create_from_hub(args.model, kwargs)
    else:
        model = timm.create_model(args.model, **kwargs)
    if args.cifar_stem and not has_cifar_stem(model):
        convert_to_cifar_stem(model)
    if args.pretrained and load_weights and "pretrained_cfg" not in kwargs:
        load_pretrained(model, num_classes=num_classes, in_chans=in_chans, filter_fn=fill_attention_keys)
    if args.attn and args.attn != "none":
        retrofit = bool(args.pretrained)
        inject_attention(model, args.attn, position=args.position, init="identity" if retrofit else "default",
                         init_gain=(getattr(args, "attn_init_gain", None) or 0.0) if retrofit else 0.0)
    if args.freeze_bn:
        model = freeze_batch_norm_2d(model)
    return model


def load_trained(path: str) -> Tuple[nn.Module, Dict[str, Any]]:
    """Rebuild a salient-train model from a checkpoint (its options are inside) and load its weights.

    Returns the model in eval mode and a timm data config (input size, mean, std) for feeding it.
    """
    state = load_checkpoint(path)
    args = argparse.Namespace(**state["args"])
    for key in ("num_classes", "in_chans", "data_mean", "data_std"):
        if getattr(args, key, None) is None:
            raise CheckpointError(f"{path} was written by an older salient-train without '{key}'")
    model = build_model(args, args.num_classes, args.in_chans, load_weights=False)
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as e:
        raise CheckpointError(f"{path}: weights do not fit {args.model}: {str(e).splitlines()[0]}") from e
    data_config = dict(input_size=(args.in_chans, args.img_size, args.img_size), mean=tuple(args.data_mean),
                       std=tuple(args.data_std), crop_pct=1.0, interpolation="bilinear", crop_mode="center")
    return model.eval(), {"model": args.model, "label": run_label(args), **data_config}
