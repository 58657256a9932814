"""What fvcore and thop report for the same model, and which of our counted ops each one misses.

fvcore traces with TorchScript and counts 1 per MAC for the ops it has handles for (it also
counts batch norm and adaptive pooling); it warns about and skips the rest. thop counts
through module hooks only (functional ``torch.sigmoid``, ``x * w`` and the residual add are
invisible to it) and leaves ``total_ops``/``total_params`` buffers on every module, so it runs
on a deep copy here.
"""

import copy
import logging
import re
import warnings
from dataclasses import dataclass, field
from typing import Dict, Optional, Tuple

import torch
from torch import nn

from .counting import CostReport

__all__ = ["LibraryCount", "fvcore_count", "thop_count", "fvcore_activations", "available_memory", "real_forward_bytes"]


@dataclass(frozen=True)
class LibraryCount:
    """A library's total and the ops (with our counts for them) it does not count."""

    library: str
    total: int
    unit: str
    missed: Dict[str, int]
    skipped: Dict[str, int] = field(default_factory=dict)  # every op the library itself skipped: its call count

    @property
    def missed_total(self) -> int:
        return sum(self.missed.values())


def _ours_by_op(report: CostReport) -> Dict[str, int]:
    return report.total.by_op


def _norm(op: str) -> str:
    return re.sub(r"_$", "", op.replace("aten::", ""))


def _direct(per_module: Dict[str, Dict[str, int]], model: nn.Module) -> Dict[str, Dict[str, int]]:
    """Per-module counts minus the children's: what each module's own forward code issued."""
    direct = {}
    for name, module in model.named_modules():
        own = dict(per_module.get(name, {}))
        for child, _ in module.named_children():
            for op, n in per_module.get(f"{name}.{child}" if name else child, {}).items():
                own[op] = own.get(op, 0) - n
        direct[name] = {op: n for op, n in own.items() if n > 0}
    return direct


def fvcore_count(model: nn.Module, input_shape: Tuple[int, ...], report: CostReport) -> LibraryCount:
    """fvcore's ``FlopCountAnalysis`` total (1 per MAC + its BN/pool handles) and the ops it skips.

    fvcore sees TorchScript-level ops (``aten::adaptive_avg_pool2d``) where torch's counter
    sees dispatch-level ones (``aten::mean``); ops are matched per module, on the code each
    module's own forward issued, so a skipped ``x.mean`` in an SE block is not confused with
    the head's pooling.
    """
    copy_ = copy.deepcopy(model).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # fvcore's import scripts a function (deprecated) and warns per op
        from fvcore.nn import FlopCountAnalysis

        logging.getLogger("fvcore").setLevel(logging.ERROR)
        analysis = FlopCountAnalysis(copy_, torch.zeros(input_shape))
        analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
        total = int(analysis.total())
        names = [name for name, _ in copy_.named_modules()]
        fv_skipped = {name: {_norm(op): n for op, n in analysis.unsupported_ops(name).items()} for name in names}
    fv_direct = _direct(fv_skipped, copy_)
    ours_direct = _direct({k: v.by_op for k, v in report.modules.items()}, model)
    missed: Dict[str, int] = {}
    for name, module_skipped in fv_direct.items():
        for op, n in ours_direct.get(name, {}).items():
            if _norm(op) in module_skipped:
                missed[op] = missed.get(op, 0) + n
    skipped = {_norm(op): int(n) for op, n in analysis.unsupported_ops().items()}  # the whole model's
    return LibraryCount("fvcore", total, "1 per MAC (+ BN, pooling)", missed, skipped)


def thop_count(model: nn.Module, input_shape: Tuple[int, ...], report: CostReport) -> LibraryCount:
    """thop's ``profile`` MAC total, and our counts for the ops outside the leaf modules it counts.

    thop counts a module only when its exact type has a non-zero counter in
    ``thop.profile.register_hooks`` (conv, linear, norm, avg pooling, ...); ReLU and max-pool
    count zero, and functional code (``torch.sigmoid``, ``x * w``, ``x + shortcut``,
    ``x.mean``) is never seen.
    """
    import thop
    from thop.profile import register_hooks

    counted_types = {t for t, fn in register_hooks.items() if fn.__name__ != "zero_ops"}
    visible: Dict[str, int] = {}
    for name, module in model.named_modules():
        if type(module) in counted_types:
            for op, n in report.module(name).by_op.items():
                visible[op] = visible.get(op, 0) + n
    missed = {op: n - visible.get(op, 0) for op, n in _ours_by_op(report).items() if n > visible.get(op, 0)}

    copy_ = copy.deepcopy(model).eval()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        macs, _ = thop.profile(copy_, inputs=(torch.zeros(input_shape),), verbose=False)
    return LibraryCount("thop", int(macs), "1 per MAC (+ BN, avg pooling)", missed)


def fvcore_activations(model: nn.Module, input_shape: Tuple[int, ...]) -> int:
    """fvcore's ``ActivationCountAnalysis`` total: output elements of conv / linear / matmul ops (eval forward).

    timm's benchmark CSV reports the same count in millions as ``infer_macts``.
    """
    copy_ = copy.deepcopy(model).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from fvcore.nn import ActivationCountAnalysis

        logging.getLogger("fvcore").setLevel(logging.ERROR)
        analysis = ActivationCountAnalysis(copy_, torch.zeros(input_shape))
        analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
        return int(analysis.total())


def available_memory() -> Optional[int]:
    """Bytes of memory available to a new allocation (Linux ``MemAvailable``; None where unknown)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def real_forward_bytes(meta_model: nn.Module, input_shape: Tuple[int, ...]) -> int:
    """An upper bound of what one real eval forward allocates: parameters, buffers and every op output (counted)."""
    from .traffic import count_traffic

    weights = sum(t.numel() * t.element_size() for t in [*meta_model.parameters(), *meta_model.buffers()])
    return weights + count_traffic(meta_model, input_shape, train=False).total.forward.written
