"""Deprecated: moved to ``salient_timm.models.salient_retrofit``; this module re-exports its names for one release."""

import warnings

from .models import salient_retrofit as _new

warnings.warn(
    "salient_timm.retrofit_arch is deprecated: import from salient_timm.models.salient_retrofit",
    DeprecationWarning,
    stacklevel=2,
)


def __getattr__(name: str):
    return getattr(_new, name)


__all__ = list(_new.__all__)
