"""Deprecated: moved to ``salient_timm.deploy.fold``; this module re-exports its names for one release."""

import warnings

from .deploy import fold as _new

warnings.warn(
    "salient_timm.folding is deprecated: import from salient_timm.deploy.fold",
    DeprecationWarning,
    stacklevel=2,
)


def __getattr__(name: str):
    return getattr(_new, name)


__all__ = list(_new.__all__)
