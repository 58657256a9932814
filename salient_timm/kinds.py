"""Deprecated: split into ``salient_timm.layers.create_attn`` (kinds by name, argument rules) and
``salient_timm.layers.identity`` (identity starts); this module re-exports both for one release."""

from ._deprecation import moved

__getattr__, __all__ = moved(__name__, "salient_timm.layers.create_attn", "salient_timm.layers.identity")
