"""Model size: parameter/buffer counts, bytes at fp32/fp16/bf16, and real serialized file sizes."""

import copy
import io
from dataclasses import dataclass
from typing import Dict

import torch
from safetensors.torch import save as safetensors_bytes
from torch import nn

__all__ = ["SizeReport", "measure_size", "DTYPES"]

DTYPES: Dict[str, torch.dtype] = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


@dataclass(frozen=True)
class SizeReport:
    """Sizes in bytes. ``bytes_at[dtype]`` casts floating tensors only (integer buffers keep their size).

    ``torch_save_bytes`` is ``torch.save(state_dict)`` to a file named ``archive.*`` (torch names
    the zip records after the file, so other names differ by a few bytes per tensor).
    """

    params: int
    buffers: int
    bytes_at: Dict[str, int]
    torch_save_bytes: int
    safetensors_bytes: int


def _tensor_bytes(t: torch.Tensor, dtype: torch.dtype) -> int:
    item = torch.empty((), dtype=dtype).element_size() if t.is_floating_point() else t.element_size()
    return t.numel() * item


def measure_size(model: nn.Module) -> SizeReport:
    """Count and serialize ``model.state_dict()``; ``model`` is not changed.

    A meta-device model is copied and materialized uninitialized on CPU: sizes do not depend on values.
    """
    if any(t.is_meta for t in model.state_dict().values()):
        model = copy.deepcopy(model).to_empty(device="cpu")
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    buf = io.BytesIO()
    torch.save(state, buf)
    return SizeReport(
        params=sum(p.numel() for p in model.parameters()),
        buffers=sum(b.numel() for b in model.buffers()),
        bytes_at={name: sum(_tensor_bytes(t, dt) for t in state.values()) for name, dt in DTYPES.items()},
        torch_save_bytes=buf.getbuffer().nbytes,
        safetensors_bytes=len(safetensors_bytes(state)),
    )
