"""How a retrofit is recorded, so it rebuilds: ``SurgeryStep`` (one ``inject_attention`` call) and ``record_retrofit``.

A model that ``ModelSpec`` builds with attention injected into a timm or torchvision ResNet (or with a CIFAR stem
converted) carries ``pretrained_cfg["architecture"] = "salient_retrofit"`` and ``_model_args``

| key | value |
|---|---|
| ``base`` | the base architecture (``"resnet50"``, or ``"torchvision:resnet50"``) |
| ``cifar_stem`` | whether the stem was converted |
| ``surgery`` | ``[SurgeryStep.to_dict(), ...]`` in order |
| ``num_classes``, ``in_chans`` | the head and the input |
| the base's own timm arguments | ``channels``, ``stem_width``, ... if given |

so timm's ``save_for_hf`` writes a ``config.json`` from which ``models/salient_retrofit.py`` rebuilds the same
architecture (``SurgeryStep.from_dict(...).apply(model)`` for each step). The anchor is timm's ``byobnet.py``:
``ByoBlockCfg`` is the serialisable form of a block, ``_builder.py`` passes ``pretrained_model_args`` through.

A step as a dict (``to_dict``; ``from_dict`` reads it back and refuses unknown keys):

| key | type | written |
|---|---|---|
| ``attn`` | kind name (``salient``, ``se``, ... ``constant``) | always |
| ``position`` | ``post`` or ``mid`` | always |
| ``kwargs`` | the attention module's own arguments | always |
| ``init``, ``init_gain`` | ``identity`` and its gain | only when ``init`` is not ``default`` |
| ``stages`` | the stages given to ``inject_attention`` | only when not every stage |
"""

import dataclasses
from typing import Any, Dict, Mapping, Optional, Sequence, Tuple, Union

from torch import nn

from .inject import SurgeryError, inject_attention

__all__ = ["ARCHITECTURE", "IMAGENET_CFG", "SurgeryStep", "record_retrofit"]

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


@dataclasses.dataclass(frozen=True)
class SurgeryStep:
    """One ``inject_attention(model, attn, position=, init=, init_gain=, stages=, **kwargs)`` call, as data.

    ``kwargs`` is kept as sorted ``(name, value)`` pairs so the step is hashable; ``stages`` as a tuple or ``None``
    (every stage)."""

    attn: str
    position: str = "post"
    kwargs: Tuple[Tuple[str, Any], ...] = ()
    init: str = "default"
    init_gain: float = 0.0
    stages: Optional[Tuple[Any, ...]] = None

    @classmethod
    def of(
        cls,
        attn: str,
        position: str = "post",
        kwargs: Optional[Mapping[str, Any]] = None,
        init: str = "default",
        init_gain: float = 0.0,
        stages: Optional[Sequence[Any]] = None,
    ) -> "SurgeryStep":
        """The step from ``inject_attention``'s own argument forms (a kwargs mapping, a stage list)."""
        return cls(
            attn=attn.lower(),
            position=position,
            kwargs=tuple(sorted(dict(kwargs or {}).items())),
            init=init,
            init_gain=float(init_gain),
            stages=None if stages is None else tuple(stages),
        )

    def apply(self, model: nn.Module) -> nn.Module:
        """Carry the step out on ``model`` (in place; ``inject_attention``'s errors)."""
        return inject_attention(
            model,
            self.attn,
            position=self.position,  # type: ignore[arg-type]
            init=self.init,  # type: ignore[arg-type]
            init_gain=self.init_gain,
            stages=self.stages,
            **dict(self.kwargs),
        )

    def to_dict(self) -> Dict[str, Any]:
        """The JSON form (table above): ``init``/``init_gain`` only off the default, ``stages`` only when given."""
        out: Dict[str, Any] = dict(attn=self.attn, position=self.position, kwargs=dict(self.kwargs))
        if self.init != "default":  # an identity start may add modules (SE's scaled gate)
            out.update(init=self.init, init_gain=self.init_gain)
        if self.stages is not None:
            out.update(stages=list(self.stages))
        return out

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "SurgeryStep":
        """A step from its JSON form (``SurgeryError`` naming unknown keys or a missing ``attn``)."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown or "attn" not in d:
            problem = f"unknown key(s) {', '.join(unknown)}" if unknown else "no 'attn'"
            raise SurgeryError(f"surgery step {dict(d)!r}: {problem}; valid keys: {', '.join(sorted(known))}")
        return cls.of(**d)


def record_retrofit(
    model: nn.Module,
    base: str,
    cifar_stem: bool,
    surgery: Sequence[Union[SurgeryStep, Mapping[str, Any]]],
    base_kwargs: Optional[Dict[str, Any]] = None,
) -> nn.Module:
    """Mark ``model`` as a ``salient_retrofit`` so timm's ``save_for_hf`` records how to rebuild it. ``surgery``:
    the steps applied, in order (a step's dict form is read with ``SurgeryStep.from_dict``); ``base_kwargs``: the
    base's own ``timm.create_model`` arguments (``channels``, ``stem_width``, ...)."""
    steps = [s if isinstance(s, SurgeryStep) else SurgeryStep.from_dict(s) for s in surgery]
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
        surgery=[s.to_dict() for s in steps],
        num_classes=m.num_classes,
        in_chans=in_chans,
    )
    return model
