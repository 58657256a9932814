"""timm registrations, timm's ``models/`` style: importing this package registers every architecture.

| module | registers | builds |
|---|---|---|
| ``salient_resnet`` | ``salient_resnet*``, ``ssa_resnet*`` | timm ResNets, a gate in each ``se`` slot (``VARIANTS``) |
| ``salient_retrofit`` | ``salient_retrofit`` | a retrofit, rebuilt from its recorded surgery |
| ``_filter`` | - | ``checkpoint_filter_fn``: timm's ``pretrained_filter_fn`` for attention slots |
"""

from . import salient_retrofit  # noqa: F401  (registers salient_retrofit in timm)
from ._filter import checkpoint_filter_fn
from .salient_resnet import VARIANTS, SalientResNet, Variant

__all__ = ["VARIANTS", "SalientResNet", "Variant", "checkpoint_filter_fn"]
