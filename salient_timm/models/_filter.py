"""timm's ``pretrained_filter_fn`` for any ResNet with attention slots: a checkpoint made to fit, or a named refusal.

| checkpoint | result |
|---|---|
| base weights (no attention keys) | every attention module starts as the identity; the output equals the base's |
| a salient-train / seed checkpoint | loaded; a missing gate ``scale`` buffer (the seed's code) takes the model's |
| some of a module's keys, other missing or unexpected keys, other shapes | ``CheckpointError`` naming them |
| another head size, same ``num_classes`` as the cfg | ``CheckpointError`` naming the sizes and the fix |
| a 7x7 stem into a CIFAR stem | the 3x3 stem keeps its fresh init, with a warning |

Source of the convention: timm's ``checkpoint_filter_fn`` per model file (``timm/models/resnet.py`` and others),
passed to ``build_model_with_cfg(pretrained_filter_fn=...)``.
"""

import logging
import pickle
import zipfile
from typing import Dict, List, Tuple

import torch
from safetensors import SafetensorError

from ..io.weights import CheckpointError
from ..layers.identity import init_identity
from ..stem import has_cifar_stem
from ..surgery import attention_modules

__all__ = ["checkpoint_filter_fn", "READ_ERRORS"]

_logger = logging.getLogger(__name__)


def _prefixes(names: List[str]) -> tuple:
    return tuple(f"{n}." for n in names)


def _describe(keys: List[str], limit: int = 6) -> str:
    shown = ", ".join(keys[:limit])
    return f"{shown}, ... ({len(keys)} in all)" if len(keys) > limit else shown


def checkpoint_filter_fn(state_dict: Dict[str, torch.Tensor], model: torch.nn.Module) -> Dict[str, torch.Tensor]:
    """timm ``pretrained_filter_fn``: make a checkpoint fit a model with attention slots, or raise.

    - An attention module none of whose keys the checkpoint has (base ResNet weights, or a slot added
      after training) is set to the identity (``init_identity``) and its keys are filled from the model.
    - A module whose keys are present: only the gate ``scale`` buffer may be missing (checkpoints of
      the seed's own code), and is filled with the model's value (1.0, the seed's gate).
    - Any other missing backbone key, any unexpected key, or a shape mismatch outside the
      classifier raises ``CheckpointError``. Into a CIFAR stem (``has_cifar_stem``) a 7x7 stem
      weight is not loaded (the 3x3 stem keeps its fresh init, with a warning).

    Works for any timm/torchvision ResNet, with or without attention (then it is a strict,
    clearly-erroring loader).
    """
    cfg = getattr(model, "pretrained_cfg", None) or {}
    classifier = cfg.get("classifier") or "fc"
    is_classifier = _prefixes([classifier] if isinstance(classifier, str) else list(classifier))
    state_dict = _fill_attention(state_dict, model)
    own = model.state_dict()
    _check_keys(state_dict, own, is_classifier, cfg.get("architecture", type(model).__name__))
    _check_head(state_dict, own, is_classifier, model, cfg)
    return _fit_shapes(state_dict, own, is_classifier, f"{cfg.get('first_conv') or 'conv1'}.weight", model)


def _fill_attention(state_dict: Dict[str, torch.Tensor], model: torch.nn.Module) -> Dict[str, torch.Tensor]:
    """A copy of ``state_dict`` with every attention key filled from the model: a module the checkpoint does not
    know starts as the identity first; one it knows in part raises ``CheckpointError`` (the gate scale aside)."""
    own = model.state_dict()
    modules = attention_modules(model)
    attn_keys = [k for k in own if k.startswith(_prefixes([name for name, _ in modules]))]
    fresh = []
    for name, module in modules:
        keys = [k for k in own if k.startswith(f"{name}.")]
        if not any(k in state_dict for k in keys):  # a module the checkpoint does not know: it starts as identity
            init_identity(module)
            fresh.append(name)
            continue
        missing_attn = [k for k in keys if k not in state_dict and not k.endswith(".gate.scale")]
        if missing_attn:
            raise CheckpointError(f"checkpoint has only some of {name}'s weights; missing: {_describe(missing_attn)}")
    if fresh:
        own = model.state_dict()
        _logger.info("checkpoint has no weights for %d attention modules: they start as identity", len(fresh))
    state_dict = dict(state_dict)
    for k in attn_keys:
        state_dict.setdefault(k, own[k])
    return state_dict


def _check_keys(
    state_dict: Dict[str, torch.Tensor], own: Dict[str, torch.Tensor], is_classifier: Tuple[str, ...], arch: str
) -> None:
    """``CheckpointError`` naming the missing backbone keys and the unexpected keys, if any."""
    missing = [
        k
        for k in own
        if k not in state_dict and not k.startswith(is_classifier) and not k.endswith("num_batches_tracked")
    ]
    unexpected = [k for k in state_dict if k not in own]
    if missing or unexpected:
        parts = ([f"missing backbone keys: {_describe(missing)}"] if missing else []) + (
            [f"unexpected keys: {_describe(unexpected)}"] if unexpected else []
        )
        raise CheckpointError(f"checkpoint does not fit {arch}: {'; '.join(parts)}")


def _fit_shapes(
    state_dict: Dict[str, torch.Tensor],
    own: Dict[str, torch.Tensor],
    is_classifier: Tuple[str, ...],
    first_conv: str,
    model: torch.nn.Module,
) -> Dict[str, torch.Tensor]:
    """``state_dict`` with a 7x7 stem weight left out of a CIFAR stem (a warning); ``CheckpointError`` for any other
    shape mismatch outside the classifier and the first conv (timm adapts that one to ``in_chans``)."""
    mismatched = []
    for k, v in state_dict.items():
        if k.startswith(is_classifier) or v.shape == own[k].shape:
            continue
        if k == first_conv and has_cifar_stem(model) and v.shape[2:] != own[k].shape[2:]:
            _logger.warning(
                "cifar_stem: checkpoint %s %s does not fit the 3x3 stem %s; keeping its fresh init",
                k,
                tuple(v.shape),
                tuple(own[k].shape),
            )
            state_dict[k] = own[k]
        elif k != first_conv:  # timm adapts the first conv to in_chans itself
            mismatched.append(f"{k} {tuple(v.shape)} vs {tuple(own[k].shape)}")
    if mismatched:
        raise CheckpointError(f"checkpoint shapes do not fit the model: {_describe(mismatched)}")
    return state_dict


def _check_head(
    state_dict: Dict[str, torch.Tensor], own: Dict[str, torch.Tensor], is_classifier: Tuple[str, ...], model, cfg
) -> None:
    """A classifier of another size is dropped by timm only when the model's num_classes differs from its cfg's
    (a new head); when they agree, timm would load it strictly and fail: name the sizes and the fix."""
    heads = [k for k in state_dict if k.startswith(is_classifier) and k in own and k.endswith("weight")]
    if not heads or cfg.get("num_classes") is None or getattr(model, "num_classes", None) != cfg["num_classes"]:
        return
    k = heads[0]
    theirs, ours = state_dict[k].shape, own[k].shape
    if theirs != ours:
        raise CheckpointError(
            f"the checkpoint's head {k} {tuple(theirs)} does not fit the model's {tuple(ours)}: it was trained for "
            f"{theirs[0]} classes; create the model with num_classes={theirs[0]} (and num_classes={theirs[0]} in "
            f"pretrained_cfg_overlay to keep this head), or with another num_classes for a new head"
        )


# what a file that is not a checkpoint raises in timm's loader (mapped to CheckpointError with the file's name)
READ_ERRORS = (
    SafetensorError,
    pickle.UnpicklingError,
    EOFError,
    zipfile.BadZipFile,
    RuntimeError,
    AttributeError,
    TypeError,
)
