"""Deprecated: the data sets moved to ``salient_timm.data`` (the toolkit reads them without the trainer); this module
re-exports every name of ``salient_timm.data.datasets`` for one release."""

from .._deprecation import moved

__getattr__, __all__ = moved(__name__, "salient_timm.data.datasets")
