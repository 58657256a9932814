"""How a retrofitted model is recorded for timm: ``architecture="salient_retrofit"`` and its ``model_args``.

A model that ``ModelSpec`` builds with attention injected into a timm or torchvision ResNet (or with a CIFAR
stem converted) carries ``pretrained_cfg["architecture"] = "salient_retrofit"`` and ``_model_args``

| key | value |
|---|---|
| ``base`` | the base architecture (``"resnet50"``, or ``"torchvision:resnet50"``) |
| ``cifar_stem`` | whether the stem was converted |
| ``surgery`` | ``[{"attn", "position", "kwargs", "init", "init_gain", "stages"}, ...]`` in order (``init`` if not default, ``stages`` if not all) |
| ``num_classes``, ``in_chans`` | the head and the input |
| the base's own timm arguments | ``channels``, ``stem_width``, ... if given |

so timm's ``save_for_hf`` writes a ``config.json`` from which the builder in ``models/salient_retrofit.py`` rebuilds the
same architecture. This module only records; it imports nothing of the package that builds.
"""

from typing import Any, Dict, Optional, Sequence

from torch import nn

__all__ = ["ARCHITECTURE", "IMAGENET_CFG", "record_retrofit"]

ARCHITECTURE = "salient_retrofit"
IMAGENET_CFG: Dict[str, Any] = dict(  # torchvision bases carry no timm cfg: ImageNet preprocessing
    input_size=(3, 224, 224),
    mean=(0.485, 0.456, 0.406),
    std=(0.229, 0.224, 0.225),
    interpolation="bilinear",
    crop_pct=0.875,
    crop_mode="center",
    first_conv="conv1",
    classifier="fc",
    pool_size=(7, 7),
    license="bsd-3-clause",
)


def record_retrofit(
    model: nn.Module,
    base: str,
    cifar_stem: bool,
    surgery: Sequence[Dict[str, Any]],
    base_kwargs: Optional[Dict[str, Any]] = None,
) -> nn.Module:
    """Mark ``model`` as a ``salient_retrofit`` so timm's ``save_for_hf`` records how to rebuild it.
    ``base_kwargs``: the base's own ``timm.create_model`` arguments (``channels``, ``stem_width``, ...)."""
    m: Any = model  # timm's attributes on an nn.Module: pretrained_cfg, num_classes, num_features, _model_args
    fc = getattr(m, "fc", None)
    if not hasattr(m, "num_classes") and isinstance(fc, nn.Linear):  # torchvision: the attributes timm reads
        m.num_classes = fc.out_features
        m.num_features = fc.in_features
    cfg = dict(getattr(m, "pretrained_cfg", None) or IMAGENET_CFG)
    cfg.update(architecture=ARCHITECTURE, num_classes=getattr(m, "num_classes", cfg.get("num_classes")))
    m.pretrained_cfg = cfg
    m.default_cfg = cfg
    first = getattr(m, "conv1", None)
    in_chans = first.in_channels if isinstance(first, nn.Conv2d) else 3
    m._model_args = dict(
        **{k: list(v) if isinstance(v, tuple) else v for k, v in (base_kwargs or {}).items()},
        base=base,
        cifar_stem=bool(cifar_stem),
        surgery=[dict(s) for s in surgery],
        num_classes=m.num_classes,
        in_chans=in_chans,
    )
    return model
