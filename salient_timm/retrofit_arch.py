"""``salient_retrofit``: a timm architecture name for a retrofitted model, so it reloads from a Hugging Face folder.

A model that ``ModelSpec`` builds with attention injected into a timm or torchvision ResNet (or with a CIFAR
stem converted) is recorded as ``architecture="salient_retrofit"`` with ``model_args``

    base:      the base architecture ("resnet50", or "torchvision:resnet50")
    cifar_stem: whether the stem was converted
    surgery:   [{"attn": kind, "position": "post"|"mid", "kwargs": {...}}, ...]  in the order applied
    num_classes, in_chans
    and the base's own timm arguments, if any (``channels``, ``stem_width``, ...)

so timm's ``save_for_hf`` writes a ``config.json`` from which ``timm.create_model("local-dir:DIR",
pretrained=True)`` (or ``hf-hub:...``) rebuilds the same architecture through this builder, then loads the
weights with ``fill_attention_keys`` (strict: every key must fit).
"""

from typing import Any, Dict, List, Optional, Sequence

from timm.models import load_pretrained, register_model
from torch import nn

__all__ = ["salient_retrofit", "record_retrofit", "IMAGENET_CFG"]

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


@register_model
def salient_retrofit(
    pretrained: bool = False,
    base: str = "resnet50",
    cifar_stem: bool = False,
    surgery: Optional[List[Dict[str, Any]]] = None,
    pretrained_cfg: Optional[Dict[str, Any]] = None,
    **kwargs: Any,
) -> nn.Module:
    """A ``base`` ResNet with ``surgery`` applied (see the module docstring); ``pretrained`` loads the weights
    that ``pretrained_cfg`` points to (a local-dir or hub folder written by ``save_for_hf``)."""
    from .spec import ModelSpec
    from .surgery import inject_attention

    kwargs.pop("pretrained_cfg_overlay", None)
    kwargs.pop("cache_dir", None)
    spec = ModelSpec(
        base,
        cifar_stem=cifar_stem,
        num_classes=kwargs.pop("num_classes", None),
        in_chans=kwargs.pop("in_chans", 3),
        timm_kwargs=() if base.startswith("torchvision:") else tuple(sorted(kwargs.items())),  # global_pool, ...
    )
    model: Any = spec.build()  # carries timm's attributes (pretrained_cfg, num_classes, _model_args)
    steps = list(surgery or [])
    for step in steps:
        inject_attention(model, step["attn"], position=step.get("position", "post"), **step.get("kwargs", {}))
    if kwargs.get("features_only"):  # a feature extractor: timm's FeatureListNet around the retrofitted trunk
        return model
    record_retrofit(model, base, cifar_stem, steps, dict(spec.timm_kwargs))
    if pretrained:
        cfg = dict(pretrained_cfg or {})  # e.g. local-dir: {"file": DIR, "source": "local-dir", ...}
        model.pretrained_cfg = {**model.pretrained_cfg, **cfg}
        from .salient_resnet import fill_attention_keys

        load_pretrained(
            model,
            pretrained_cfg=model.pretrained_cfg,
            num_classes=model.num_classes,
            in_chans=model._model_args["in_chans"],
            filter_fn=fill_attention_keys,
        )
    return model
