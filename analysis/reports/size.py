"""``salient-analyze size``: parameter and buffer counts, bytes per dtype, serialized file sizes."""

from torch import nn

from ..render import Report, Table
from ..size import measure_size
from ..spec import AnalysisTarget
from ._common import base_of

__all__ = ["size_report"]

SIZE_COLUMNS = [
    "model",
    "params",
    "buffers",
    "fp32 bytes",
    "fp16 bytes",
    "bf16 bytes",
    "fp32 MB",
    "torch.save bytes",
    "safetensors bytes",
]


def _size_row(label: str, model: nn.Module) -> dict:
    s = measure_size(model)
    return {
        "model": label,
        "params": s.params,
        "buffers": s.buffers,
        "fp32 bytes": s.bytes_at["fp32"],
        "fp16 bytes": s.bytes_at["fp16"],
        "bf16 bytes": s.bytes_at["bf16"],
        "fp32 MB": s.bytes_at["fp32"] / 1e6,
        "torch.save bytes": s.torch_save_bytes,
        "safetensors bytes": s.safetensors_bytes,
    }


def size_report(spec: AnalysisTarget) -> Report:
    """Parameter/buffer counts, bytes per dtype and real serialized sizes (base, variant, added)."""
    rows = [_size_row(spec.label, spec.build())]
    if spec.attn != "none":
        rows.insert(0, _size_row(base_of(spec).label, base_of(spec).build()))
        rows.append({"model": "added", **{k: rows[1][k] - rows[0][k] for k in rows[0] if k != "model"}})
    return Report(
        "size",
        [Table(f"Size of {spec.label}", SIZE_COLUMNS, rows)],
        notes=["bytes at fp16/bf16 cast floating tensors only; MB = 10^6 bytes"],
    )
