"""``salient_retrofit``: a timm architecture name for a retrofitted model, so it reloads from a Hugging Face folder.

The builder reads the ``model_args`` that ``surgery.record_retrofit`` wrote (base, cifar_stem, surgery steps,
num_classes, in_chans, the base's own arguments): ``timm.create_model("local-dir:DIR", pretrained=True)`` (or
``hf-hub:...``) builds the base through ``ModelSpec``, applies each ``SurgeryStep``, then loads the weights with
``checkpoint_filter_fn`` (strict: every key must fit).
"""

from typing import Any, Dict, List, Optional

from timm.models import load_pretrained, register_model
from torch import nn

from ..spec import ModelSpec
from ..surgery import SurgeryStep, record_retrofit
from ._filter import checkpoint_filter_fn

__all__ = ["salient_retrofit", "DEFAULT_SURGERY"]

DEFAULT_SURGERY = (SurgeryStep("salient", init="identity"),)  # what the bare name builds


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
    that ``pretrained_cfg`` points to (a local-dir or hub folder written by ``save_for_hf``). Without ``surgery``
    (``timm.create_model("salient_retrofit")``): the name's meaning, a resnet50 with a Salient gate on every residual
    block, started as the identity."""
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
    steps = list(DEFAULT_SURGERY) if surgery is None else [SurgeryStep.from_dict(d) for d in surgery]
    for step in steps:
        step.apply(model)
    if kwargs.get("features_only"):  # a feature extractor: timm's FeatureListNet around the retrofitted trunk
        return model
    record_retrofit(model, base, cifar_stem, steps, dict(spec.timm_kwargs))
    if pretrained:
        cfg = dict(pretrained_cfg or {})  # e.g. local-dir: {"file": DIR, "source": "local-dir", ...}
        model.pretrained_cfg = {**model.pretrained_cfg, **cfg}
        load_pretrained(
            model,
            pretrained_cfg=model.pretrained_cfg,
            num_classes=model.num_classes,
            in_chans=model._model_args["in_chans"],
            filter_fn=checkpoint_filter_fn,
        )
    return model
