"""Deprecated: split into ``salient_timm.deploy.export`` (ONNX, ExportedProgram) and ``salient_timm.deploy.hub``
(Hugging Face folder, model card); this module re-exports both for one release."""

from ._deprecation import moved

__getattr__, __all__ = moved(__name__, "salient_timm.deploy.export", "salient_timm.deploy.hub")
