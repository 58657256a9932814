"""Deprecated: the data sets moved to ``salient_timm.data`` (the toolkit reads them without the trainer); this module
re-exports every name of ``salient_timm.data.datasets`` for one release."""

import warnings

from ..data import datasets as _datasets

warnings.warn(
    "salient_timm.train.data is deprecated: import the data sets from salient_timm.data",
    DeprecationWarning,
    stacklevel=2,
)


def __getattr__(name: str):
    return getattr(_datasets, name)


__all__ = list(_datasets.__all__)
