"""Deprecated: the slotted block classes moved to ``salient_timm.surgery.families`` (one module per timm model file)
and the slot mechanism to ``salient_timm.surgery.slots``; this module re-exports the old names for one release."""

import warnings

from .surgery.families.resnet import TimmBasicBlockSlots, TimmBottleneckSlots
from .surgery.families.torchvision import TvBasicBlockSlots, TvBottleneckSlots

__all__ = ["TimmBasicBlockSlots", "TimmBottleneckSlots", "TvBasicBlockSlots", "TvBottleneckSlots"]

warnings.warn(
    "salient_timm.slots is deprecated: import the slotted blocks from salient_timm.surgery.families and the widths "
    "from salient_timm.find_residual_blocks(model)[i].channels(position)",
    DeprecationWarning,
    stacklevel=2,
)
