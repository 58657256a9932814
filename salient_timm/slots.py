"""Deprecated: the slotted block classes moved to ``salient_timm.surgery.families`` (one module per timm model file)
and the slot mechanism to ``salient_timm.surgery.slots``; this module re-exports the old names for one release."""

from ._deprecation import moved

__getattr__, __all__ = moved(
    __name__,
    "salient_timm.surgery.families.resnet",
    "salient_timm.surgery.families.torchvision",
    message="salient_timm.slots is deprecated: import the slotted blocks from salient_timm.surgery.families and "
    "the widths from salient_timm.find_residual_blocks(model)[i].channels(position)",
)
