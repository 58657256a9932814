"""Analytic cost formulas per attention block, the seed's and the full ones, checked against counts.

For a block input of shape (N, C, H, W) (counts below are per image; rows multiply by N):

| block | params | seed params | seed cost | full MACs | full elementwise ops |
|---|---|---|---|---|---|
| salient (fused, gemv, conv) | C + 2 | C | C·H·W | C·H·W | H·W (BN) + H·W (sigmoid) + H·W (gate scale) + C·H·W (multiply) |
| salient (sum) | C + 2 | C | C·H·W | 0 | 2·C·H·W (w·x, channel sum) + 3·H·W + C·H·W (multiply) |
| ssa (fused, gemv) | 2 | - | - | C·H·W ((GAP/C)·x) | C·H·W (GAP) + C (1/C) + 3·H·W (BN, sigmoid, scale) + C·H·W (multiply) |
| ssa (mean) | 2 | - | - | 0 | C·H·W (GAP) + C·H·W (GAP·x) + C·H·W (mean_c) + 3·H·W (BN, sigmoid, scale) + C·H·W (multiply) |
| se (C_r = C/r) | 2·C·C_r (+ C_r + C biases) | C·C/8 | C·C/8 + C·H·W | 2·C·C_r | C·H·W (pool) + C_r (ReLU) + C (sigmoid) [+ C scale] + C·H·W (multiply) |

The gate scale row applies where the gate is ``ScaledSigmoid`` (always for salient/ssa;
for se only after ``init='identity'``): one multiply per gate element.
"""

from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Tuple

from timm.layers.squeeze_excite import SEModule
from torch import nn

from salient_timm import SalientBlock, ScaledSigmoid, SSABlock, attention_modules

from .counting import CostReport, count_cost, eval_forward

__all__ = ["BlockFormula", "FormulaRow", "formula_for", "formula_rows", "attention_input_shapes"]


@dataclass(frozen=True)
class BlockFormula:
    """Analytic counts for one block at (N, C, H, W); ``None`` where the seed gives no formula."""

    params: int
    seed_params: Optional[int]
    seed_cost: Optional[int]
    macs: int
    elementwise: int
    seed_cost_text: str
    full_text: str

    @property
    def flops(self) -> int:
        return 2 * self.macs + self.elementwise


def _salient(m: SalientBlock, c: int, h: int, w: int) -> BlockFormula:
    hw, chw = h * w, c * h * w
    if m.impl == "sum":  # the same C·H·W multiply-adds, as an elementwise multiply and a channel sum
        return BlockFormula(
            params=c + 2,
            seed_params=c,
            seed_cost=chw,
            macs=0,
            elementwise=2 * chw + 3 * hw + chw,
            seed_cost_text="C·H·W",
            full_text="ops 2·C·H·W (w·x, channel sum) + 3·H·W (BN, sigmoid, scale) + C·H·W (multiply)",
        )
    return BlockFormula(
        params=c + 2,
        seed_params=c,
        seed_cost=chw,
        macs=chw,
        elementwise=3 * hw + chw,
        seed_cost_text="C·H·W",
        full_text="MAC C·H·W; ops 3·H·W (BN, sigmoid, scale) + C·H·W (multiply)",
    )


def _ssa(m: SSABlock, c: int, h: int, w: int) -> BlockFormula:
    hw, chw = h * w, c * h * w
    if m.impl in ("gemv", "fused"):
        return BlockFormula(
            params=2,
            seed_params=None,
            seed_cost=None,
            macs=chw,
            elementwise=2 * chw + c + 3 * hw,
            seed_cost_text="-",
            full_text="MAC C·H·W ((GAP/C)·x); ops 2·C·H·W (GAP, multiply) + C (1/C) + 3·H·W (BN, sigmoid, scale)",
        )
    return BlockFormula(
        params=2,
        seed_params=None,
        seed_cost=None,
        macs=0,
        elementwise=4 * chw + 3 * hw,
        seed_cost_text="-",
        full_text="ops 4·C·H·W (GAP, GAP·x, mean_c, multiply) + 3·H·W (BN, sigmoid, scale)",
    )


def _se(m: SEModule, c: int, h: int, w: int) -> BlockFormula:
    r = m.fc1.out_channels
    chw = c * h * w
    scale = c if isinstance(m.gate, ScaledSigmoid) else 0
    biases = sum(fc.bias.numel() for fc in (m.fc1, m.fc2) if fc.bias is not None)
    return BlockFormula(
        params=2 * c * r + biases,
        seed_params=c * c // 8,
        seed_cost=c * c // 8 + chw,
        macs=2 * c * r,
        elementwise=2 * chw + r + c + scale,
        seed_cost_text="C·C/8 + C·H·W",
        full_text="MAC 2·C·C_r (C_r = fc1 width); ops 2·C·H·W (pool, multiply) + C_r (ReLU) + C (sigmoid)"
        + (" + C (scale)" if scale else ""),
    )


# block class -> formula. Adding a kind means adding a row.
FORMULAS: Dict[type, Callable[..., BlockFormula]] = {SalientBlock: _salient, SSABlock: _ssa, SEModule: _se}


def formula_for(module: nn.Module, c: int, h: int, w: int) -> Optional[BlockFormula]:
    """The per-image formula for ``module`` at (C, H, W), or ``None`` for kinds without one."""
    fn = FORMULAS.get(type(module))
    return fn(module, c, h, w) if fn else None


def attention_input_shapes(model: nn.Module, input_shape: Tuple[int, ...]) -> Dict[str, Tuple[int, ...]]:
    """Input shape seen by every attention module in one eval forward (hooks removed after)."""
    shapes: Dict[str, Tuple[int, ...]] = {}
    handles = []
    for name, module in attention_modules(model):
        handles.append(
            module.register_forward_pre_hook(
                lambda mod, args, name=name: shapes.__setitem__(name, tuple(args[0].shape))
            )
        )
    try:
        eval_forward(model, input_shape)
    finally:
        for h in handles:
            h.remove()
    return shapes


@dataclass(frozen=True)
class FormulaRow:
    """One attention block: where it is, formulas (scaled by batch N) and the measured count."""

    block: str
    stage: str
    kind: str
    n: int
    c: int
    h: int
    w: int
    params_measured: int
    formula: Optional[BlockFormula]
    measured_macs: int
    measured_elementwise: int

    @property
    def measured_flops(self) -> int:
        return 2 * self.measured_macs + self.measured_elementwise

    @property
    def full_flops(self) -> Optional[int]:
        return None if self.formula is None else self.n * self.formula.flops

    @property
    def seed_cost(self) -> Optional[int]:
        return None if self.formula is None or self.formula.seed_cost is None else self.n * self.formula.seed_cost

    @property
    def verdict(self) -> str:
        if self.formula is None:
            return "no formula"
        ok = (
            self.formula.params == self.params_measured
            and self.n * self.formula.macs == self.measured_macs
            and self.n * self.formula.elementwise == self.measured_elementwise
        )
        return "match" if ok else "MISMATCH"

    @property
    def seed_leaves_out(self) -> Optional[int]:
        """Ops the seed's cost formula does not count (full FLOPs-style count minus seed cost)."""
        if self.seed_cost is None:
            return None
        return self.n * (self.formula.macs + self.formula.elementwise) - self.seed_cost


def formula_rows(
    model: nn.Module, input_shape: Tuple[int, ...], report: Optional[CostReport] = None
) -> List[FormulaRow]:
    """One ``FormulaRow`` per attention block of ``model`` at ``input_shape`` (N, C, H, W)."""
    report = report or count_cost(model, input_shape)
    shapes = attention_input_shapes(model, input_shape)
    rows = []
    for name, module in attention_modules(model):
        n, c, h, w = shapes[name]
        measured = report.module(name)
        rows.append(
            FormulaRow(
                block=name,
                stage=name.split(".")[0],
                kind=type(module).__name__,
                n=n,
                c=c,
                h=h,
                w=w,
                params_measured=sum(p.numel() for p in module.parameters()),
                formula=formula_for(module, c, h, w),
                measured_macs=measured.macs,
                measured_elementwise=measured.elementwise,
            )
        )
    return rows
