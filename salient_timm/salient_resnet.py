"""Deprecated: moved to ``salient_timm.models.salient_resnet``; this module re-exports its names for one release."""

import warnings

from .models import _filter
from .models import salient_resnet as _new

warnings.warn(
    "salient_timm.salient_resnet is deprecated: import from salient_timm.models "
    "(fill_attention_keys is salient_timm.models.checkpoint_filter_fn)",
    DeprecationWarning,
    stacklevel=2,
)


def __getattr__(name: str):
    return getattr(_new, name)


fill_attention_keys = _filter.checkpoint_filter_fn  # its old name

__all__ = [*_new.__all__, "fill_attention_keys"]
