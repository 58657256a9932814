"""Deprecated: split into ``salient_timm.deploy.export`` (ONNX, ExportedProgram) and ``salient_timm.deploy.hub``
(Hugging Face folder, model card); this module re-exports both for one release."""

import warnings

from .deploy import export as _export
from .deploy import hub as _hub

warnings.warn(
    "salient_timm.export is deprecated: import from salient_timm.deploy.export (ONNX, ExportedProgram) and "
    "salient_timm.deploy.hub (save_hf_folder, model_card)",
    DeprecationWarning,
    stacklevel=2,
)


def __getattr__(name: str):
    return getattr(_hub if name in _hub.__all__ else _export, name)


__all__ = [*_export.__all__, *_hub.__all__]
