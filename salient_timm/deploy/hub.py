"""A Hugging Face folder timm reloads as it was evaluated: ``save_hf_folder`` (timm's ``save_for_hf`` with the run's
preprocessing and class names, refused for a model timm cannot rebuild) and its ``model_card``.

| what | function | source |
|---|---|---|
| config.json + model.safetensors + README.md | ``save_hf_folder(model, directory, card, data_config)`` | timm's ``save_for_hf`` |
| README.md text for a salient-train checkpoint | ``model_card(label, checkpoint)`` | the checkpoint's args and history |
"""

import copy
import os
from typing import Any, Dict, List, Optional, Tuple

import timm
import torch
from timm.models import save_for_hf
from timm.models._hub import get_model_args
from torch import nn

from ..io.checkpoint import TrainCheckpoint
from ..io.weights import CheckpointError
from .export import ExportError

__all__ = ["DATA_CONFIG_KEYS", "save_hf_folder", "model_card"]


DATA_CONFIG_KEYS = ("input_size", "interpolation", "crop_pct", "crop_mode", "mean", "std")
# what a base's pretrained cfg says about *its* weights, which a model trained here no longer has
FOREIGN_WEIGHTS_KEYS = (
    "tag",
    "hf_hub_id",
    "url",
    "file",
    "origin_url",
    "paper_ids",
    "notes",
    "test_input_size",
    "test_crop_pct",
    "license",
    "label_names",
    "label_descriptions",
)


def save_hf_folder(model: nn.Module, directory: str, card: str = "", data_config: Optional[dict] = None) -> str:
    """timm's ``save_for_hf`` (config.json with the architecture and ``model_args``, safetensors weights) plus a
    ``README.md`` model card; ``timm.create_model("local-dir:DIR", pretrained=True)`` rebuilds the model after
    ``import salient_timm`` (``hf-hub:USER/NAME`` once pushed with ``timm.models.push_to_hf_hub``).

    ``data_config``: the preprocessing the weights were evaluated with (``input_size``, ``mean``, ``std``,
    ``interpolation``, ``crop_pct``, ``crop_mode``) and their ``label_names``, as ``ModelSpec.from_checkpoint``
    returns it. It replaces the base's in ``config.json``, with what the base's cfg says of *its* weights dropped
    (tag, hub ids, license, labels), so timm's own ``resolve_data_config`` + ``create_transform`` feed the reloaded
    model as it was evaluated, and ``pretrained_cfg["label_names"]`` names its classes.

    Registered variants (``salient_*``/``ssa_*``), plain timm models and models that ``ModelSpec`` retrofitted
    (timm or ``torchvision:`` bases, recorded as ``salient_retrofit``; every kind, init and ``freeze_bn``)
    round-trip; frozen BatchNorm is written as the ``BatchNorm2d`` a rebuild creates (equal in eval mode). A model
    changed after it was built (a bare ``inject_attention`` call, a stem conversion, any module or tensor shape a
    rebuild would not reproduce) has no record of the change and is refused (``ExportError`` naming the first
    difference).
    """
    model, architecture = _rebuildable(model)
    if data_config is None:
        save_for_hf(model, directory, safe_serialization=True)
    else:
        _save_with_data_config(model, directory, data_config)
    with open(os.path.join(directory, "README.md"), "w") as f:
        f.write(
            card
            or f"# {architecture}\n\nSaved with salient-timm. Load with `import salient_timm; "
            f"timm.create_model('local-dir:{directory}', pretrained=True)`.\n"
        )
    return directory


def _structure(model: nn.Module) -> Dict[str, str]:
    """What a rebuild must reproduce: each module's type and settings (strides, pooling, sizes), each tensor's
    shape. Not dtype, device, memory format or train/eval mode, which a reload sets again."""
    out = {f"module {name or '(root)'}": f"{type(m).__name__}({m.extra_repr()})" for name, m in model.named_modules()}
    out.update({f"tensor {k}": str(tuple(v.shape)) for k, v in model.state_dict().items()})
    return out


def _first_difference(ours: Dict[str, str], rebuilt: Dict[str, str]) -> Optional[str]:
    for key in sorted(set(ours) | set(rebuilt), key=lambda k: (k.split(" ", 1)[1], k)):
        if ours.get(key) != rebuilt.get(key):
            return f"{key} is {ours.get(key, 'absent')}, a rebuild gives {rebuilt.get(key, 'none')}"
    return None


def model_card(label: str, checkpoint: Optional[str] = None) -> str:
    """A short README.md for a Hugging Face folder: what the model is and, for a salient-train checkpoint, its
    data, epochs, accuracy and attention kind."""
    lines = [
        f"# {label}",
        "",
        "Exported with salient-timm. Load it with:",
        "",
        "```python",
        "import timm, salient_timm",
        "model = timm.create_model('local-dir:PATH', pretrained=True)",
        "```",
        "",
    ]
    if checkpoint:
        try:
            state: Optional[TrainCheckpoint] = TrainCheckpoint.read(checkpoint)
        except CheckpointError:
            state = None
        if state is not None:
            lines += _training_table(state)
    return "\n".join(lines) + "\n"


def _rebuildable(model: nn.Module) -> Tuple[nn.Module, str]:
    """The model as a rebuild from its config creates it (frozen BatchNorm as ``BatchNorm2d``, same statistics) and
    its timm architecture; ``ExportError`` where timm would rebuild something else (the first difference named)."""
    from timm.layers import FrozenBatchNormAct2d, unfreeze_batch_norm_2d
    from torchvision.ops.misc import FrozenBatchNorm2d  # what timm's freeze_batch_norm_2d puts in

    if any(isinstance(m, (FrozenBatchNorm2d, FrozenBatchNormAct2d)) for m in model.modules()):  # --freeze-bn
        model = unfreeze_batch_norm_2d(copy.deepcopy(model))
    cfg = getattr(model, "pretrained_cfg", None) or {}
    architecture = cfg.get("architecture")
    if architecture is None:
        raise ExportError("only timm models can be saved as a Hugging Face folder (this one has no pretrained_cfg)")
    with torch.device("meta"):  # would timm rebuild exactly this model from the folder's config?
        fresh = timm.create_model(architecture, **get_model_args(model))
    difference = _first_difference(_structure(model), _structure(fresh))
    if difference:
        raise ExportError(
            f"{architecture} was changed after it was built ({difference}): inject_attention, a stem conversion "
            "or another edit outside salient_timm.ModelSpec, so timm cannot rebuild it from a Hugging Face folder; "
            "build it with ModelSpec(base, attn=..., cifar_stem=...) (recorded as salient_retrofit), or export to "
            "ONNX / ExportedProgram"
        )
    return model, architecture


def _save_with_data_config(model: nn.Module, directory: str, data_config: dict) -> None:
    """timm's ``save_for_hf`` with the weights' own preprocessing and class names in ``config.json``, and the base
    cfg's statements about *its* weights (tag, hub ids, license, labels) left out; the model's cfg is restored."""
    own = {k: data_config[k] for k in DATA_CONFIG_KEYS if k in data_config}
    labels = data_config.get("label_names")
    timm_model: Any = model  # timm's attributes on an nn.Module
    base_cfg = timm_model.pretrained_cfg
    timm_model.pretrained_cfg = {k: v for k, v in base_cfg.items() if k not in FOREIGN_WEIGHTS_KEYS}
    try:
        save_for_hf(
            model,
            directory,
            safe_serialization=True,
            data_config=own,
            model_config={"label_names": list(labels)} if labels else None,
        )
    finally:
        timm_model.pretrained_cfg = base_cfg


def _training_table(state: TrainCheckpoint) -> List[str]:
    """The card's "trained with" table: data, epochs, attention, the accuracy of the weights it ships (the
    checkpoint's own epoch: ``best.pth`` is chosen on validation under ``--holdout``, so the highest test top-1 may
    be another epoch), and where training started."""
    from ..models.salient_resnet import VARIANTS

    args, history = state.args, state.metrics
    built_in = VARIANTS[args["model"]].attn if args.get("model") in VARIANTS else None
    attention = args.get("attn") if args.get("attn") not in (None, "none") else (built_in or "none")
    own = state.epoch_row()
    rows = [
        f"| data | {args.get('dataset')} at {args.get('img_size')} px |",
        f"| epochs | {len(history)} of {args.get('epochs')} |",
        f"| attention | {attention} ({args.get('position')}) |",
        f"| test top-1 | {own['test_top1']:.2f}% (epoch {own['epoch']}, these weights) |" if own else None,
        f"| validation top-1 | {own['val_top1']:.2f}% (best.pth is chosen on it) |"
        if own and "val_top1" in own
        else None,
        f"| started from | {args.get('weights') or args.get('pretrained') or 'scratch'} |",
    ]
    return ["| trained with | |", "|---|---|", *(row for row in rows if row is not None)]
