"""Deprecated: moved to ``salient_timm.deploy.reparameterize``; this module re-exports its names for one release."""

import warnings

from .deploy import reparameterize as _new

warnings.warn(
    "salient_timm.reparam is deprecated: import from salient_timm.deploy.reparameterize (or salient_timm)",
    DeprecationWarning,
    stacklevel=2,
)


def __getattr__(name: str):
    return getattr(_new, name)


__all__ = list(_new.__all__)
