"""Every numeric claim of the seed text, and a check of each against models built here.

Only the seed's claims are constants in this file. Every measured value, and every
candidate explanation, is computed from models built with timm / salient_timm.

Verdicts:
- ``reproduced``: the seed's own configuration gives the claimed value (``about`` claims:
  within ±10%);
- ``reproduced under a condition``: the seed's configuration does not, but a stated one does;
- ``refuted``: no configuration examined gives it; the explanation says what does;
- ``not checked``: needs data or compute this tool does not have (stated why).
"""

import functools
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from torch import nn

from salient_timm import ModelSpec, attention_modules, find_residual_blocks

from .formulas import formula_rows
from .size import measure_size

__all__ = ["Claim", "ClaimCheck", "SEED_CLAIMS", "check_claims", "VERDICTS", "ABOUT_TOLERANCE"]

REPRODUCED, CONDITIONAL, REFUTED, NOT_CHECKED = ("reproduced", "reproduced under a condition", "refuted", "not checked")
VERDICTS = (REPRODUCED, CONDITIONAL, REFUTED, NOT_CHECKED)
ABOUT_TOLERANCE = 0.10  # "about X" claims hold within ±10%
SEED_INPUT = (3, 32, 32)  # "对于32*32的输入图像"
KB, MB, KIB, MIB = 1e3, 1e6, 1024.0, 1024.0**2


@dataclass(frozen=True)
class Claim:
    """A number the seed text states, with its words."""

    id: str
    quote: str
    claimed: str


@dataclass(frozen=True)
class ClaimCheck:
    """The verdict on one claim: what was measured and why the verdict follows."""

    claim: Claim
    measured: str
    verdict: str
    explanation: str


SEED_CLAIMS: Tuple[Claim, ...] = (
    Claim("salient-params", "Salient-Net增加了3776个参数 (ResNet-50, 32x32 input)", "3776"),
    Claim("se-params", "SE-Block增加了891136个参数 (ResNet-50, 32x32 input)", "891136"),
    Claim("se-params-formula", "SE 参数量：C*C/8", "C*C/8"),
    Claim("se-cost-formula", "SE 计算量：C*C/8 + C*H*W", "C*C/8 + C*H*W"),
    Claim("salient-params-formula", "Salient-Block只需要C*1的参数量", "C*1"),
    Claim("salient-cost-formula", "Salient: 1x1 conv C->1 on (C,H,W), cost C*H*W", "C*H*W"),
    Claim("resnet50-size", "ResNet-50的模型大小约为90MB", "about 90 MB"),
    Claim("salient-size", "加入了Salient-Block后模型大小增加100KB左右", "about +100 KB"),
    Claim("se-size", "增加SE-Block后模型大小增加约10MB", "about +10 MB"),
    *(
        Claim(f"acc-{data}-{net}", f"{data} Top-1 ACC {net}", value)
        for data, net, value in (
            ("cifar100", "ResNet50", "77.260%"),
            ("cifar100", "SeNet50", "77.130%"),
            ("cifar100", "SalientNet50", "78.350%"),
            ("cifar10", "ResNet50", "94.380%"),
            ("cifar10", "SeNet50", "94.830%"),
            ("cifar10", "SalientNet50", "94.930%"),
        )
    ),
)
CLAIMS_BY_ID: Dict[str, Claim] = {c.id: c for c in SEED_CLAIMS}


# ---------------------------------------------------------------- model helpers (meta device: no weights)
@functools.cache
def _built(
    model: str, attn: str = "none", position: str = "post", num_classes: int = 100, cifar_stem: bool = True, **attn_kw
) -> nn.Module:
    """The seed's setting by default: CIFAR-100 head, CIFAR stem (32x32 inputs keep 32x32 in layer1)."""
    spec = ModelSpec(
        model, attn=attn, position=position, num_classes=num_classes, cifar_stem=cifar_stem, attn_kwargs=attn_kw
    )
    return spec.build("meta").eval()


def _n_params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def _attn_params(m: nn.Module, conv_only: bool) -> int:
    return sum(
        p.numel()
        for name, mod in attention_modules(m)
        for pn, p in mod.named_parameters()
        if not conv_only or pn.startswith("conv")
    )


def _widths(model: str, position: str) -> List[int]:
    return [b.channels(position) for b in find_residual_blocks(_built(model))]


def _standard_se(model: str) -> nn.Module:
    """SE as in the SE-Net paper: r = 16, two FCs without bias, no rounding of C/16."""
    return _built(model, "se", bias=False, rd_divisor=1)


SEED_SETTING = "ResNet-50 with CIFAR stem and 100-class head, 32x32 input"


def _fmt_int(n: float) -> str:
    return f"{int(n):,}"


def _about(measured: float, claimed: float) -> bool:
    return abs(measured - claimed) <= ABOUT_TOLERANCE * claimed


# ---------------------------------------------------------------- checks, one per claim
def _salient_params(claim: Claim) -> ClaimCheck:
    target = int(claim.claimed)
    seed = _attn_params(_built("resnet50", "salient"), conv_only=False)
    matches = []
    for model in ("resnet18", "resnet34", "resnet50", "resnet101"):
        for position in ("post", "mid"):
            for conv_only in (False, True):
                if _attn_params(_built(model, "salient", position), conv_only) == target:
                    matches.append(f"{model} at '{position}'" + (" counting conv weights only" if conv_only else ""))
    widths = _widths("resnet50", "mid")
    expl = (
        f"at the seed's position (after the last BN, before the add) ResNet-50 gets "
        f"{_fmt_int(_attn_params(_built('resnet50', 'salient'), True))} conv weights "
        f"(Σ C_out over 16 blocks) + {2 * len(widths)} BN params = {_fmt_int(seed)}. "
        f"{target} = Σ planes = {' + '.join(f'{widths.count(w)}·{w}' for w in sorted(set(widths)))}: "
        f"it holds for {'; '.join(matches) or 'no configuration examined'}"
    )
    verdict = REPRODUCED if seed == target else CONDITIONAL if matches else REFUTED
    return ClaimCheck(claim, _fmt_int(seed), verdict, expl)


def _se_params(claim: Claim) -> ClaimCheck:
    target = int(claim.claimed)
    base = _n_params(_built("resnet50"))
    standard = _n_params(_standard_se("resnet50")) - base
    timm_se = _n_params(_built("resnet50", "se")) - base
    post, mid = _widths("resnet50", "post"), _widths("resnet50", "mid")
    candidates = {
        "Σ C²/8 over blocks (C = block output width)": sum(c * c // 8 for c in post),
        "Σ C²/8 over blocks (C = 3x3 conv width)": sum(c * c // 8 for c in mid),
        f"(Σ planes)²/16 = {sum(mid)}²/16": sum(mid) ** 2 // 16,
        f"(Σ planes)²/8 = {sum(mid)}²/8": sum(mid) ** 2 // 8,
        f"(Σ C_out)²/16 = {sum(post)}²/16": sum(post) ** 2 // 16,
    }
    hits = [name for name, value in candidates.items() if value == target]
    verdict = REPRODUCED if target in (standard, timm_se) else REFUTED
    expl = (
        f"standard SE-ResNet-50 (r=16, no bias) adds {_fmt_int(standard)}; timm's SE (bias, C/16 rounded to 8) "
        f"adds {_fmt_int(timm_se)}. {target} = {' = '.join(hits) if hits else 'none of the candidate formulas'}"
        + (": the C·C/8-style formula applied once to the summed width, which no SE network has" if hits else "")
    )
    return ClaimCheck(claim, f"{_fmt_int(standard)} (standard SE)", verdict, expl)


def _se_params_formula(claim: Claim) -> ClaimCheck:
    standard = [m for _, m in attention_modules(_standard_se("resnet50"))]
    timm_se = [m for _, m in attention_modules(_built("resnet50", "se"))]
    exact = all(_n_params(m) == m.fc1.in_channels**2 // 8 for m in standard)
    off = [(m.fc1.in_channels, _n_params(m)) for m in timm_se if _n_params(m) != m.fc1.in_channels**2 // 8]
    verdict = CONDITIONAL if exact else REFUTED
    c, n = off[0] if off else (0, 0)
    return ClaimCheck(
        claim,
        f"{len(standard)}/{len(standard)} blocks = C²/8 (r=16, no bias)" if exact else "differs",
        verdict,
        f"C·C/8 = 2·C·(C/16): exact for SE with r=16 and no bias; timm's default SE adds biases "
        f"(C/16 + C) and rounds C/16 to a multiple of 8 (e.g. C={c}: {_fmt_int(n)} vs {_fmt_int(c * c // 8)})",
    )


def _se_cost_formula(claim: Claim) -> ClaimCheck:
    model = _standard_se("resnet50")
    rows = formula_rows(model, (1, *SEED_INPUT))
    seed = sum(r.seed_cost for r in rows)
    full = sum(r.measured_macs + r.measured_elementwise for r in rows)
    r0 = rows[0]
    return ClaimCheck(
        claim,
        f"{_fmt_int(full)} ops vs formula {_fmt_int(seed)} ({SEED_SETTING})",
        CONDITIONAL,
        f"C·C/8 + C·H·W counts the FC MACs and the broadcast multiply only; measured per block it leaves out "
        f"C·H·W (global pool) + C/16 (ReLU) + C (sigmoid), e.g. {r0.block} (C={r0.c}, {r0.h}x{r0.w}): "
        f"{_fmt_int(r0.measured_macs + r0.measured_elementwise)} vs {_fmt_int(r0.seed_cost)}; in all "
        f"{_fmt_int(full - seed)} ops (+{100 * (full - seed) / seed:.0f}%). Holds as 'MACs + multiply'",
    )


def _salient_params_formula(claim: Claim) -> ClaimCheck:
    mods = [m for _, m in attention_modules(_built("resnet50", "salient"))]
    conv_ok = all(m.conv.weight.numel() == m.conv.in_channels for m in mods)
    total_ok = all(_n_params(m) == m.conv.in_channels + 2 for m in mods)
    return ClaimCheck(
        claim,
        f"C + 2 per block ({len(mods)} blocks)",
        CONDITIONAL if conv_ok and total_ok else REFUTED,
        "C*1 is the 1x1 conv's weight count; the BatchNorm over the single gate channel adds 2 "
        "(γ, β) per block, i.e. +32 on ResNet-50",
    )


def _salient_cost_formula(claim: Claim) -> ClaimCheck:
    rows = formula_rows(_built("resnet50", "salient", impl="conv"), (1, *SEED_INPUT))  # the seed's block as written
    macs_ok = all(r.measured_macs == r.c * r.h * r.w for r in rows)
    full = sum(r.measured_macs + r.measured_elementwise for r in rows)
    seed = sum(r.seed_cost for r in rows)
    return ClaimCheck(
        claim,
        f"MACs = C·H·W on {len(rows)}/{len(rows)} blocks; full {_fmt_int(full)} ops vs {_fmt_int(seed)}",
        CONDITIONAL if macs_ok else REFUTED,
        f"C·H·W is the 1x1 conv's MACs (the seed's nn.Conv2d block); the block also does C·H·W multiplies (w·x) "
        f"and H·W each for BN, sigmoid and "
        f"the gate scale: 2·C·H·W + 3·H·W in all (+{100 * (full - seed) / seed:.0f}% on {SEED_SETTING})",
    )


def _size_candidates(measure: Callable[[int], int]) -> Dict[str, float]:
    out = {}
    for classes in (1000, 100, 10):
        n = measure(classes)
        out[f"{classes} classes, MB"] = n / MB
        out[f"{classes} classes, MiB"] = n / MIB
    return out


def _resnet50_size(claim: Claim) -> ClaimCheck:
    sizes = {c: measure_size(_built("resnet50", num_classes=c, cifar_stem=False)) for c in (1000, 100, 10)}
    cands = _size_candidates(lambda c: sizes[c].bytes_at["fp32"])
    ok = [k for k, v in cands.items() if _about(v, 90)]
    seed_ok = any(k.startswith("100 ") for k in ok) and all(
        _about(v, 90) for k, v in cands.items() if k.startswith("100 ")
    )
    return ClaimCheck(
        claim,
        "; ".join(f"{k}: {v:.1f}" for k, v in cands.items() if "10 classes" not in k),
        REPRODUCED if seed_ok else CONDITIONAL if ok else REFUTED,
        f"fp32 weights of ImageNet-stem ResNet-50: {_fmt_int(sizes[1000].params)} params with the ImageNet head, "
        f"{_fmt_int(sizes[100].params)} with a 100-class head; within ±10% of 90 for: {', '.join(ok) or 'none'}",
    )


def _delta_size(
    claim: Claim, variant: nn.Module, base: nn.Module, target: float, unit: float, unit_name: str, note: str
) -> ClaimCheck:
    a, b = measure_size(variant), measure_size(base)
    deltas = {
        "fp32 tensors": a.bytes_at["fp32"] - b.bytes_at["fp32"],
        "torch.save file": a.torch_save_bytes - b.torch_save_bytes,
        "safetensors file": a.safetensors_bytes - b.safetensors_bytes,
    }
    ok = [k for k, v in deltas.items() if _about(v / unit, target)]
    verdict = REPRODUCED if "fp32 tensors" in ok else CONDITIONAL if ok else REFUTED
    return ClaimCheck(
        claim,
        "; ".join(f"{k} +{v / unit:.1f} {unit_name}" for k, v in deltas.items()),
        verdict,
        f"+{_fmt_int(a.params - b.params)} params; within ±10% for: {', '.join(ok) or 'none'}. {note}",
    )


def _salient_size(claim: Claim) -> ClaimCheck:
    return _delta_size(
        claim,
        _built("resnet50", "salient"),
        _built("resnet50"),
        100,
        KB,
        "KB",
        "File deltas include per-tensor archive overhead (6 tensors per block)",
    )


def _se_size(claim: Claim) -> ClaimCheck:
    return _delta_size(
        claim,
        _standard_se("resnet50"),
        _built("resnet50"),
        10,
        MB,
        "MB",
        f"the seed's 891136 SE params would be {891136 * 4 / MB:.1f} MB: its two SE numbers disagree",
    )


def _accuracy(claim: Claim) -> ClaimCheck:
    return ClaimCheck(
        claim,
        "-",
        NOT_CHECKED,
        "needs CIFAR data: run the recipe (CIFAR-100/10, batch 100, SGD lr 0.1 /10 every 50 epochs, "
        "240 epochs); no data set or training run is part of this analysis. The same comparison on the "
        "data we can read offline (ResNet / SE / Salient / SSA, several seeds, paired intervals): "
        "results/fashion.md (Fashion-MNIST) and results/cluttered.md (cluttered Fashion-MNIST, with localization)",
    )


CHECKS: Dict[str, Callable[[Claim], ClaimCheck]] = {
    "salient-params": _salient_params,
    "se-params": _se_params,
    "se-params-formula": _se_params_formula,
    "se-cost-formula": _se_cost_formula,
    "salient-params-formula": _salient_params_formula,
    "salient-cost-formula": _salient_cost_formula,
    "resnet50-size": _resnet50_size,
    "salient-size": _salient_size,
    "se-size": _se_size,
}


def check_claims(
    ids: Optional[Sequence[str]] = None, progress: Optional[Callable[[Claim], None]] = None
) -> List[ClaimCheck]:
    """Check the seed's claims (all, or those in ``ids``), in the seed's order."""
    claims = SEED_CLAIMS if ids is None else tuple(CLAIMS_BY_ID[i] for i in ids)
    results = []
    for claim in claims:
        results.append(CHECKS.get(claim.id, _accuracy)(claim))
        if progress:
            progress(claim)
    return results
