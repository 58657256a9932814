"""Deploy a model: ONNX (dynamic batch) with an onnxruntime parity check, and torch.export's ExportedProgram.

| format | function | needs |
|---|---|---|
| ONNX | ``export_onnx(model, path, input_size)`` | the ``onnx`` extra (onnx, onnxscript; onnxruntime for ``onnx_parity``) |
| ExportedProgram | ``export_program(model, path, input_size)`` (``torch.export.save``; load with ``torch.export.load``) | torch only |

Both trace the model in eval mode (a Hugging Face folder: ``deploy.hub``). The fused gate is an eager training path: under export it uses its plain
GEMV ops, so every registered variant and every retrofitted model exports.
"""

import json
import os
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch
from torch import nn

from ..errors import SalientError, first_line
from ..extras import require

__all__ = [
    "ExportError",
    "ONNX_FILE_LIMIT",
    "export_onnx",
    "onnx_files",
    "export_program",
    "onnx_parity",
]


class ExportError(SalientError, RuntimeError):
    """The model could not be exported, or the exported model disagrees with it."""


def _example(model: nn.Module, input_size: Sequence[int], batch: int = 2) -> torch.Tensor:
    ref = next(model.parameters())
    return torch.zeros(batch, *input_size, device=ref.device, dtype=ref.dtype)


ONNX_FILE_LIMIT = 2**31 - 1  # protobuf's limit on one serialised ONNX model, in bytes
_ONNX_HEADROOM = 64 * 2**20  # graph, names and attributes beside the weights


def export_onnx(
    model: nn.Module,
    path: str,
    input_size: Sequence[int],
    opset: int = 18,
    label_names: Optional[Sequence[str]] = None,
) -> str:
    """Write ``model`` (eval mode) to ``path`` as ONNX with a dynamic batch dimension; returns ``path``.

    One self-contained file when the weights fit protobuf's 2 GB limit; otherwise the weights go to external
    data beside it (``onnx_files(path)`` lists every file the model needs). ``label_names`` (each class index's
    name) go into the model's metadata as ``label_names`` (a JSON list). Raises ``ExportError``.
    """
    require("onnx", "onnx", "ONNX export")
    require("onnxscript", "onnx", "ONNX export")
    model = model.eval()
    x = _example(model, input_size)
    weight_bytes = sum(t.numel() * t.element_size() for t in (*model.parameters(), *model.buffers()))
    try:
        torch.onnx.export(
            model,
            (x,),
            path,
            dynamo=True,
            opset_version=opset,
            verbose=False,
            dynamic_shapes={"x": {0: torch.export.Dim("batch")}},
            input_names=["input"],
            output_names=["logits"],
            external_data=weight_bytes > ONNX_FILE_LIMIT - _ONNX_HEADROOM,
        )
    except Exception as e:  # noqa: BLE001  the exporter's own errors, one line
        raise ExportError(f"ONNX export failed: {type(e).__name__}: {first_line(e)}") from e
    if label_names:
        _add_onnx_metadata(path, {"label_names": json.dumps(list(label_names))})
    return path


def _add_onnx_metadata(path: str, entries: Dict[str, str]) -> None:
    onnx = require("onnx", "onnx", "ONNX export")
    proto = onnx.load(path, load_external_data=False)  # external data files stay as they are
    for key, value in entries.items():
        prop = proto.metadata_props.add()
        prop.key, prop.value = key, value
    onnx.save(proto, path)


def onnx_files(path: str) -> List[str]:
    """Every file the ONNX model at ``path`` needs: ``path`` and the external data files its tensors name."""
    onnx = require("onnx", "onnx", "reading ONNX files")
    proto = onnx.load(path, load_external_data=False)
    external = {
        entry.value
        for tensor in proto.graph.initializer
        if tensor.data_location == onnx.TensorProto.EXTERNAL
        for entry in tensor.external_data
        if entry.key == "location"
    }
    return [path, *(os.path.join(os.path.dirname(path), name) for name in sorted(external))]


def onnx_parity(model: nn.Module, path: str, batch: torch.Tensor) -> float:
    """Max absolute difference between onnxruntime's output for ``batch`` and the model's (eval mode)."""
    ort = require("onnxruntime", "onnx", "the ONNX parity check")
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    ours = session.run(None, {name: batch.detach().cpu().numpy().astype(np.float32)})[0]
    with torch.no_grad():
        reference = model.eval()(batch).detach().cpu().numpy()
    return float(np.abs(ours - reference).max())


def export_program(model: nn.Module, path: str, input_size: Sequence[int]) -> str:
    """``torch.export`` the model (eval mode, dynamic batch) and save the ExportedProgram to ``path``."""
    model = model.eval()
    x = _example(model, input_size)
    try:
        program = torch.export.export(model, (x,), dynamic_shapes={"x": {0: torch.export.Dim("batch")}})
        torch.export.save(program, path)
    except Exception as e:  # noqa: BLE001
        raise ExportError(f"torch.export failed: {type(e).__name__}: {first_line(e)}") from e
    return path
