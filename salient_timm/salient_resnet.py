"""Deprecated: moved to ``salient_timm.models.salient_resnet`` (the checkpoint filter to ``salient_timm.models``,
renamed ``checkpoint_filter_fn``); this module re-exports the old names for one release."""

from ._deprecation import moved

__getattr__, __all__ = moved(
    __name__,
    "salient_timm.models.salient_resnet",
    "salient_timm.models",
    renamed={"fill_attention_keys": "checkpoint_filter_fn"},
)
