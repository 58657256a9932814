"""``salient-analyze params``: parameters of the base model and the variant, per stage."""

from typing import Dict

from torch import nn

from ..counting import count_params
from ..render import Report, Table
from ..spec import AnalysisTarget
from ..stages import model_stages
from ._common import base_of

__all__ = ["params_report"]


def params_report(spec: AnalysisTarget) -> Report:
    """Parameters of the base model and the variant, per stage (``salient_analysis.stages``), and what the attention
    adds; stages without parameters in either are left out."""
    variant_model = spec.build()
    base_model = base_of(spec).build() if spec.attn != "none" else variant_model
    variant, base = count_params(variant_model), count_params(base_model)
    b, v = _stage_params(base_model), _stage_params(variant_model)
    rows = [
        {"part": part, "base": b.get(part, 0), "variant": v.get(part, 0), "added": v.get(part, 0) - b.get(part, 0)}
        for part in dict.fromkeys([*b, *v])
        if b.get(part, 0) or v.get(part, 0)
    ]
    rows.append(
        {"part": "total", "base": base.params, "variant": variant.params, "added": variant.params - base.params}
    )
    notes = [
        f"model {spec.label}: {variant.attention_params:,} parameters in attention modules; "
        f"{variant.buffers:,} buffer elements"
    ]
    if spec.attn == "none":  # nothing added: one column of counts, not three that repeat it
        rows = [{"part": r["part"], "params": r["variant"]} for r in rows]
        return Report("params", [Table(f"Parameters: {spec.label}", ["part", "params"], rows)], notes=notes)
    return Report(
        "params",
        [Table(f"Parameters: {base_of(spec).label} -> {spec.label}", ["part", "base", "variant", "added"], rows)],
        notes=notes,
    )


def _stage_params(model: nn.Module) -> Dict[str, int]:
    """Parameters per stage, and the root's own (ViT's ``cls_token``, ``pos_embed``) as "outside the stages"."""
    counts = {
        stage: sum(p.numel() for name in names for p in model.get_submodule(name).parameters())
        for stage, names in model_stages(model)
    }
    counts["outside the stages"] = sum(p.numel() for p in model.parameters(recurse=False))
    return counts
