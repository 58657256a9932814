"""``salient-analyze export``: ONNX with an onnxruntime parity check, ExportedProgram, Hugging Face folder."""

import os
from typing import List, Optional, Sequence

import torch
from torch import nn

from salient_timm.deploy import export as ex
from salient_timm.deploy import hub
from salient_timm.spec import ModelSpec

from ..maps.io import load_for_maps
from ..render import Report, Table

__all__ = ["export_report"]


def export_report(
    spec: Optional[ModelSpec],
    checkpoint: Optional[str] = None,
    input_size: Optional[Sequence[int]] = None,
    onnx_path: Optional[str] = None,
    program_path: Optional[str] = None,
    hf_dir: Optional[str] = None,
) -> Report:
    """Write each format asked for and check the two graphs against the eager model on a random batch of 3.

    The model comes from a salient-train ``checkpoint`` (its own options and preprocessing), a weights file loaded
    into ``spec``'s model, or ``spec`` alone (random weights); ``input_size`` (C, H, W): the export's example input,
    by default the data config's. Without ``checkpoint`` the Hugging Face card says the weights are random."""
    net, config = load_for_maps(spec, checkpoint)
    size = tuple(input_size or config["input_size"])
    torch.manual_seed(0)
    probe = torch.randn(3, *size)
    rows = []
    if onnx_path:
        rows.append(_onnx_row(net, onnx_path, size, probe, config.get("label_names")))
    if program_path:
        ex.export_program(net, program_path, size)
        with torch.no_grad():
            diff = (torch.export.load(program_path).module()(probe) - net(probe)).abs().max().item()
        rows.append(
            {
                "format": "ExportedProgram",
                "path": program_path,
                "MB": os.path.getsize(program_path) / 1e6,
                "max abs diff": diff,
            }
        )
    if hf_dir:
        card = hub.model_card(config["label"], checkpoint)
        # a salient-train checkpoint's own preprocessing goes into config.json; random weights drop the
        # base's pretrained label (its preprocessing stays); a weights file keeps the model's cfg
        if not checkpoint:
            card += "\nThe weights are random (untrained): exported with --random-weights.\n"
        own = config.get("trained") or not checkpoint
        hub.save_hf_folder(net, hf_dir, card, config if own else None)
        rows.append({"format": "Hugging Face folder", "path": hf_dir, "MB": None, "max abs diff": None})
    title = f"Exports of {config['label']} at input {'x'.join(map(str, size))}"
    return Report(
        "export",
        [Table(title, ["format", "path", "MB", "max abs diff"], rows)],
        notes=["max abs diff: exported vs eager model on a random batch of 3 (dynamic batch)"],
    )


def _onnx_row(net: nn.Module, path: str, size: tuple, probe: torch.Tensor, label_names: Optional[List[str]]) -> dict:
    ex.export_onnx(net, path, size, label_names=label_names)
    files = ex.onnx_files(path)  # one file below 2 GB; else the graph and its external data
    return {
        "format": "ONNX",
        "path": " + ".join(files),
        "MB": sum(os.path.getsize(f) for f in files) / 1e6,
        "max abs diff": ex.onnx_parity(net, path, probe),
    }
