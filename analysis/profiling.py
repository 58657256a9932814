"""The measurements behind ``salient-analyze profile`` (``salient_analysis.reports.profile`` lays them out as
tables): counted bytes and saved memory beside measured time, per stage, block and gate.

For a model spec and its base (the same model without ``--attn``):

- counted on the meta device (``traffic.count_traffic``): FLOPs (forward, and backward for ``train``),
  bytes read + written, bytes saved for backward;
- measured on ``device`` (``timing``): each top-level child, residual block and attention slot timed in
  isolation on the input it saw in a real forward pass, and the whole step; base and variant
  interleaved; the peak memory of one step;
- the roofline: the time the device's peak FLOP/s and copy bandwidth would allow for each scope's
  counts (measured with a large matmul and a large copy, or given).

Shares are of the variant's whole step: its total counted FLOPs, bytes, saved bytes and the measured step time.
"""

import contextlib
from dataclasses import dataclass, replace
from typing import Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import torch
from torch import nn

from salient_timm import attention_modules, find_residual_blocks

from .crosscheck import available_memory, real_forward_bytes
from .deploy import reparameterized
from .spec import AnalysisTarget, SpecError
from .stages import model_stages
from .timing import Peaks, Timing, device_peaks, peak_step_bytes, remeasured, time_modules
from .traffic import TrafficReport, count_traffic

__all__ = [
    "ProfileOptions",
    "ScopeCost",
    "ModelProfile",
    "profile_models",
    "profile_steps",
    "timm_units",
    "count_timm_units",
    "reference_attention",
    "trust_warnings",
]


@dataclass(frozen=True)
class ProfileOptions:
    """``measure=False`` counts only (no timing, no peaks). ``peaks=None`` measures the device's peaks.
    ``reparam`` (inference only): both models folded for inference first (``salient_analysis.deploy``)."""

    train: bool = True
    device: str = "cpu"
    repeats: int = 5
    warmup: int = 1
    measure: bool = True
    peaks: Optional[Peaks] = None
    reparam: bool = False

    def build(self, spec: AnalysisTarget, device: str) -> nn.Module:
        """``spec``'s model on ``device``, folded where ``reparam``."""
        if self.reparam:
            if self.train:
                raise SpecError("a folded model is for inference: profile it with train=False")
            return reparameterized(spec, device)[0]
        return spec.build(device)


@dataclass(frozen=True)
class ScopeCost:
    """One scope of one model: counted FLOPs and bytes (step or forward), saved bytes, measured seconds."""

    name: str
    kind: str  # "stage", "block", "attention" or "total"
    flops: int
    bytes: int
    saved: int
    seconds: Optional[float] = None
    spread: Optional[Tuple[float, float]] = None

    @property
    def intensity(self) -> float:
        """FLOPs per byte moved."""
        return self.flops / self.bytes if self.bytes else 0.0


@dataclass
class ModelProfile:
    label: str
    traffic: TrafficReport
    scopes: List[ScopeCost]
    step_seconds: Optional[float]
    step_spread: Optional[Tuple[float, float]]
    peak_bytes: Optional[int]
    units: Dict[str, float]  # timm benchmark-CSV units of the inference forward (``timm_units``)

    def scope(self, name: str) -> Optional[ScopeCost]:
        return next((s for s in self.scopes if s.name == name), None)

    @property
    def total(self) -> ScopeCost:
        return self.scopes[-1]


def _scope_names(model: nn.Module) -> Dict[str, List[str]]:
    """Modules to time: the stages' modules (``salient_analysis.stages``), residual blocks, attention slots."""
    return {
        "children": [name for _, names in model_stages(model) for name in names],
        "blocks": [b.name for b in find_residual_blocks(model)],
        "attention": [n for n, _ in attention_modules(model)],
    }


def _count(traffic: TrafficReport, name: str, train: bool) -> Tuple[int, int, int]:
    m = traffic.module(name)
    cost = m.step if train else m.forward
    return cost.flops, cost.bytes, m.saved_bytes


def _timed(timings: Dict, label: str, name: str, train: bool) -> Tuple[Optional[float], Optional[Tuple[float, float]]]:
    fwd = timings.get((label, name, "forward"))
    if fwd is None:
        return None, None
    bwd = timings.get((label, name, "backward")) if train else None
    samples = [f + (b if bwd else 0.0) for f, b in zip(fwd.samples, bwd.samples if bwd else [0.0] * len(fwd.samples))]
    t = Timing(tuple(samples))
    return t.median, t.spread


def _scopes(label: str, model: nn.Module, traffic: TrafficReport, timings: Dict, train: bool) -> List[ScopeCost]:
    names = _scope_names(model)
    scopes: List[ScopeCost] = []
    for stage, children in model_stages(model):
        counts = [_count(traffic, c, train) for c in children]
        times = [_timed(timings, label, c, train)[0] for c in children]
        seconds = sum(times) if times and all(t is not None for t in times) else None
        scopes.append(ScopeCost(stage, "stage", *(sum(x) for x in zip(*counts)), seconds=seconds))
    total = _count(traffic, "", train)
    rest = tuple(t - sum(s[i] for s in ((x.flops, x.bytes, x.saved) for x in scopes)) for i, t in enumerate(total))
    if any(rest):  # ops outside every child (the loss and its gradient): listed so the stage rows add up
        scopes.append(ScopeCost("loss", "stage", *rest))
    for kind in ("blocks", "attention"):
        for name in names[kind]:
            seconds, spread = _timed(timings, label, name, train)
            scopes.append(
                ScopeCost(name, kind.rstrip("s"), *_count(traffic, name, train), seconds=seconds, spread=spread)
            )
    step, spread = _timed(timings, label, "", train)
    scopes.append(ScopeCost("total", "total", *total, seconds=step, spread=spread))
    return scopes


def _check_fits(meta_model: nn.Module, spec: AnalysisTarget, device: torch.device, train: bool) -> None:
    """Refuse (one line) a measurement whose step would not fit the device's free memory."""
    need = real_forward_bytes(meta_model, spec.input_shape) * (3 if train else 1)  # + saved tensors and gradients
    have = torch.cuda.mem_get_info(device)[0] if device.type == "cuda" else available_memory()
    if have is not None and need > have:
        raise SpecError(
            f"measuring at input {'x'.join(map(str, spec.input_shape))} needs up to {need / 1e9:.1f} GB, "
            f"more than the {have / 1e9:.1f} GB free on {device}; lower --batch-size or --input-size, "
            "or count only with --no-measure"
        )


def _specs(spec: AnalysisTarget) -> List[AnalysisTarget]:
    return [replace(spec, attn="none", attn_stages=None)] + ([spec] if spec.attn.lower() != "none" else [])


def profile_steps(spec: AnalysisTarget, options: ProfileOptions) -> int:
    """How many times ``profile_models`` calls its ``progress``: per model a count and (measuring) a peak memory,
    one per timing round, and the device's peaks before and after the timing unless they are given."""
    models = len(_specs(spec))
    if not options.measure:
        return models
    return 2 * models + options.warmup + options.repeats + (2 if options.peaks is None else 0)


def profile_models(
    spec: AnalysisTarget, options: ProfileOptions, progress: Callable[[str], None] = lambda what: None
) -> Tuple[List[ModelProfile], Optional[Peaks]]:
    """Count (meta device) and measure (``options.device``) the base model and ``spec``'s variant.

    ``progress(what)`` is called after each of ``profile_steps(spec, options)`` steps, ``what`` naming it."""
    specs = _specs(spec)
    meta = {s.label: options.build(s, "meta") for s in specs}  # counts, scope names and the memory check
    traffic, inference = {}, {}
    for label, m in meta.items():
        traffic[label] = count_traffic(m, spec.input_shape, train=options.train)
        inference[label] = traffic[label] if not options.train else count_traffic(m, spec.input_shape, train=False)
        progress(f"counted {label}")
    timings: Dict = {}
    peaks_bytes: Dict[str, Optional[int]] = {s.label: None for s in specs}
    peaks = options.peaks
    if options.measure:
        device = torch.device(options.device)
        _check_fits(meta[specs[-1].label], spec, device, options.train)
        if peaks is None:
            peaks = device_peaks(device)
            progress("measured the device's peaks")
        models = {s.label: options.build(s, str(device)) for s in specs}
        x = torch.randn(spec.input_shape, device=device)
        names = {label: [n for group in _scope_names(m).values() for n in group] for label, m in models.items()}
        rounds = options.warmup + options.repeats

        def timed(r: int) -> None:
            progress(f"timing round {r + 1}/{rounds}" + (" (warm-up)" if r < options.warmup else ""))

        timings = time_modules(models, names, x, options.train, options.repeats, options.warmup, timed)
        for label, m in models.items():
            peaks_bytes[label] = peak_step_bytes(m, x, options.train)
            progress(f"peak memory of {label}")
        if options.peaks is None:
            peaks = remeasured(peaks, device_peaks(device))
            progress("measured the device's peaks again")
    profiles = []
    for s in specs:
        scopes = _scopes(s.label, meta[s.label], traffic[s.label], timings, options.train)
        total = scopes[-1]
        units = count_timm_units(meta[s.label], spec.input_shape, inference[s.label])
        profiles.append(
            ModelProfile(s.label, traffic[s.label], scopes, total.seconds, total.spread, peaks_bytes[s.label], units)
        )
    return profiles, peaks


# When a measurement cannot be trusted: thresholds of ``trust_warnings``.
MAX_STEP_SPREAD = 1.5  # slowest / fastest repeat of a whole step
MAX_PEAK_DRIFT = 0.25  # change of the device's matmul or copy peak from before to after the timing
MAX_TIME_PER_BYTES = 3.0  # a block's time ratio (variant / base) over its counted bytes ratio


def trust_warnings(profiles: List[ModelProfile], peaks: Optional[Peaks]) -> List[str]:
    """Signs that the machine was busy while measuring, each as one sentence (empty: none seen).

    | sign | threshold |
    |---|---|
    | the variant's step faster than its base while it moves more bytes | any |
    | a step's slowest repeat over its fastest | ``MAX_STEP_SPREAD`` |
    | the device's peaks before vs after the timing | ``MAX_PEAK_DRIFT`` |
    | a residual block's time ratio over its bytes ratio (variant / base) | ``MAX_TIME_PER_BYTES`` |
    """
    warnings = []
    base, variant = profiles[0], profiles[-1]
    if variant is not base and variant.step_seconds and base.step_seconds:
        ratio = variant.step_seconds / base.step_seconds
        more = variant.total.bytes / base.total.bytes
        if ratio < 1 and more > 1:
            warnings.append(
                f"{variant.label}'s step measured {ratio:.2f}x its base's although it moves {more:.2f}x the bytes"
            )
    for p in profiles:
        if p.step_spread and p.step_spread[0] > 0 and p.step_spread[1] / p.step_spread[0] > MAX_STEP_SPREAD:
            lo, hi = p.step_spread
            warnings.append(f"{p.label}'s step times spread {1e3 * lo:.1f}-{1e3 * hi:.1f} ms ({hi / lo:.1f}x)")
    if peaks is not None and peaks.drift > MAX_PEAK_DRIFT:
        warnings.append(f"the device's matmul or copy peak changed by {peaks.drift:.0%} during the measurement")
    if variant is not base:
        worst = []
        for v in variant.scopes:
            b = base.scope(v.name)
            if v.kind == "block" and b and v.seconds and b.seconds and b.bytes:
                worst.append(
                    ((v.seconds / b.seconds) / (v.bytes / b.bytes), v.name, v.seconds / b.seconds, v.bytes / b.bytes)
                )
        slow = sorted((w for w in worst if w[0] > MAX_TIME_PER_BYTES), reverse=True)
        if slow:
            _, name, t, nbytes = slow[0]
            warnings.append(
                f"{len(slow)} residual block(s) measured more than {MAX_TIME_PER_BYTES:g}x slower than their bytes "
                f"grew (worst {name}: {t:.1f}x the time for {nbytes:.2f}x the bytes)"
            )
    if warnings:
        warnings.append("the machine was likely busy: rerun alone, or with more --repeats, before trusting the times")
    return warnings


def timm_units(traffic: TrafficReport) -> Dict[str, float]:
    """timm's benchmark CSV units of the forward, per image, and our MAC-only count beside them.

    | column | counts, per image | convention |
    |---|---|---|
    | ``infer_gmacs`` | conv/linear/matmul MACs + fvcore's norm, pool, resample terms - its blind spots, / 1e9 | (1) |
    | ``infer_macts`` | output elements of conv/linear/matmul - fvcore's blind spots, / 1e6 | (2) |
    | ``gmacs_mm`` | conv/linear/matmul MACs only (attention matmuls included), / 1e9 | ours (``counting``) |

    (1) timm's ``benchmark.py``: fvcore's ``FlopCountAnalysis``, whose norm, pool and resample rules are
    ``traffic.FVCORE_TERMS`` and whose blind spots (string-padded convs, LSTMs) ``traffic.FVCORE_UNSEEN``; unlike
    today's fvcore, attention matmuls (``scaled_dot_product_attention``) are counted, as timm's published table does.
    (2) fvcore's ``ActivationCountAnalysis``, as timm's ``benchmark.py`` runs it.

    ``traffic`` should count timm's explicit attention path: ``count_timm_units`` does.
    """
    n = traffic.input_shape[0]
    total = traffic.total
    return {
        "infer_gmacs": (total.forward.macs + traffic.fvcore_terms - traffic.fvcore_unseen_macs) / n / 1e9,
        "infer_macts": (total.activations - traffic.fvcore_unseen_activations) / n / 1e6,
        "gmacs_mm": total.forward.macs / n / 1e9,
    }


@contextlib.contextmanager
def reference_attention(model: nn.Module) -> Iterator[Sequence[nn.Module]]:
    """timm's attention modules run their explicit-matmul path while inside (``fused_attn`` off, restored after).

    timm's published CSV counts attention that way: vit_small_patch16_224 4.61 GMACs (fvcore skips the fused
    kernel: 4.25) and DiffAttention's one ``attn @ v`` (its fused path runs two). Yields the switched modules."""
    switched = [m for m in model.modules() if getattr(m, "fused_attn", None) is True]
    try:
        for m in switched:
            m.fused_attn = False
        yield switched
    finally:
        for m in switched:
            m.fused_attn = True


def count_timm_units(
    model: nn.Module, input_shape: Tuple[int, ...], inference: Optional[TrafficReport] = None
) -> Dict[str, float]:
    """``timm_units`` of ``model``'s inference forward at ``input_shape`` (N, C, H, W), attention counted in timm's
    explicit path (``reference_attention``). ``inference``, a count of the same forward, is reused when no module
    has fused attention to switch off."""
    with reference_attention(model) as switched:
        if switched or inference is None:
            inference = count_traffic(model, input_shape, train=False)
    return timm_units(inference)
