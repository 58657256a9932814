"""Deprecated: moved to ``salient_timm.surgery.record``; this module re-exports its names for one release."""

from ._deprecation import moved

__getattr__, __all__ = moved(__name__, "salient_timm.surgery.record")
