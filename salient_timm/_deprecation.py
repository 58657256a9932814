"""Re-export shims for moved modules: the old import path keeps working for one release and warns once.

A shim is two lines (the old module's ``__getattr__`` and ``__all__``, PEP 562)::

    from ._deprecation import moved
    __getattr__, __all__ = moved(__name__, "salient_timm.deploy.fold")
"""

import importlib
import warnings
from typing import Any, Callable, Dict, List, Optional, Tuple

__all__ = ["moved"]


def moved(
    old: str, *new: str, renamed: Optional[Dict[str, str]] = None, message: Optional[str] = None
) -> Tuple[Callable[[str], Any], List[str]]:
    """Warn (``DeprecationWarning``, at the importer's line) that module ``old`` moved to the modules ``new``.

    Returns the old module's ``__getattr__``, which looks each name up in ``new`` in order (``renamed`` maps an
    old name to its new one), and its ``__all__``: every public name of ``new`` plus the old names in ``renamed``.
    ``message`` replaces the default warning text, which names every new module.
    """
    modules = [importlib.import_module(name) for name in new]
    renamed = dict(renamed or {})
    warnings.warn(message or f"{old} is deprecated: import from {' or '.join(new)}", DeprecationWarning, stacklevel=3)

    def __getattr__(name: str) -> Any:
        target = renamed.get(name, name)
        for module in modules:
            if hasattr(module, target):
                return getattr(module, target)
        raise AttributeError(f"module {old!r} has no attribute {name!r}")

    names = [name for module in modules for name in getattr(module, "__all__", ())]
    return __getattr__, [*dict.fromkeys(names), *renamed]
