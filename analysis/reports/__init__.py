"""Library functions behind each ``salient-analyze`` command: they build models and return ``Report`` data.

| command | module | function |
|---|---|---|
| ``params`` | ``params`` | ``params_report(spec)`` |
| ``flops`` | ``flops`` | ``flops_report(spec, per_block, crosscheck, reparam)`` |
| ``size`` | ``size`` | ``size_report(spec)`` |
| ``compare`` | ``compare`` | ``compare_report(specs, progress, reparam)`` |
| ``formula`` | ``formula`` | ``formula_report(spec)`` |
| ``reproduce`` | ``reproduce`` | ``reproduce_report(progress)`` |
| ``export`` | ``export`` | ``export_report(spec, checkpoint, input_size, onnx_path, program_path, hf_dir)`` |
| ``maps`` | ``maps`` | ``maps_report(spec, images, ...)``, ``localization_report(spec, dataset, ...)`` |
| ``profile`` | ``profile`` | ``profile_report(spec, options, plot=, progress=, warn=)`` (``profiling`` measures) |

Only ``export`` and ``maps`` are not re-exported here (import their modules): they need the model's weights and
write files. ``_common`` holds the counting convention every table states (``CONVENTION``).
"""

from ._common import CONVENTION
from .compare import compare_report, reparam_label
from .flops import flops_report
from .formula import formula_report
from .params import params_report
from .profile import profile_report
from .reproduce import reproduce_report
from .size import size_report

__all__ = [
    "CONVENTION",
    "params_report",
    "flops_report",
    "size_report",
    "compare_report",
    "formula_report",
    "reproduce_report",
    "profile_report",
    "reparam_label",
]
