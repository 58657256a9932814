"""Optional dependencies, and one clear error naming the extra that installs a missing one.

| extra | packages | needed for |
|---|---|---|
| ``train`` | scikit-learn | ``salient-train --dataset digits`` |
| ``plot`` | matplotlib | figures: ``maps --out``, ``profile --plot``, ``curves.png`` |
| ``onnx`` | onnx, onnxscript, onnxruntime | ``export --onnx`` and its parity check |

``pip install salient-timm`` alone gives the plugin and ``salient-analyze``'s counting.
"""

import importlib
from types import ModuleType

from .errors import SalientError

__all__ = ["MissingExtraError", "require"]


class MissingExtraError(SalientError, ImportError):
    """An optional dependency is not installed."""


def require(module: str, extra: str, feature: str) -> ModuleType:
    """Import ``module`` or raise ``MissingExtraError`` saying which extra installs it."""
    try:
        return importlib.import_module(module)
    except ImportError as e:
        package = module.split(".")[0]
        raise MissingExtraError(
            f"{feature} needs {package}, which is not installed: pip install 'salient-timm[{extra}]' "
            f"(from a source checkout: pip install '.[{extra}]')"
        ) from e
