"""Where a gated ResNet's extra time goes: per op, per block, and the fused path's Python checks (issue 33).

    python benchmarks/gate_breakdown.py                                   # every scenario, salient and ssa
    python benchmarks/gate_breakdown.py --scenarios "train b64 32px" --models salient_resnet50 --json out.json

Three measurements per scenario, each against resnet50 built the same way (``block_overhead.build``: channels_last,
fp32, the training step of ``block_overhead``; inference scenarios folded, against resnet50 folded by torch.fx):

- **per op**: ``torch.profiler``, ``--profile-rounds`` interleaved steps per model, the median self time of each
  aten op, gated minus plain: which kernels the gate adds (the rest of the wall time is Python and dispatch).
- **per block**: one block of each stage alone (its recorded input, forward + backward), interleaved, medians, with
  minor page faults per call: which stage the time goes to, against the gate's bytes at copy bandwidth.
- **checks**: the training step with the fused path's checks replaced by ``True`` (an experiment only: hooks and
  tracers are then ignored), interleaved with the real step: what the per-call checks cost.
- **norm**: the training step with the epilogue's norm backward as the native kernel alone (a fresh input gradient,
  the code before the in-place ``_norm_backward``), interleaved with the real step: a before/after in one run.
  ``--variants native-norm`` adds the same variant to the per-block rows.

Profiled times include the profiler's own overhead per op (a few us), which the gated models pay more often; the
interleaved timings do not. Ratios come from one run; the spread is min-max over repeats.
"""

import argparse
import contextlib
import json
import platform
import resource
import statistics
import time
from collections import defaultdict
from typing import Callable, Dict, Iterator, List, Tuple

import timm
import torch
from block_overhead import EXTRA, FX_FUSED, QUICK_CPU, Scenario, build, copy_bandwidth, step_fn
from torch import nn
from torch.profiler import ProfilerActivity, profile

import salient_timm
from salient_timm.layers import _fused_gate as fused_gate
from salient_timm.layers import salient as gate_blocks
from salient_timm.surgery import slots as gate_slots

SCENARIOS = {sc.name: sc for sc in QUICK_CPU + EXTRA}
DEFAULT_SCENARIOS = ["train b64 32px", "train b16 224px", "infer b1 224px", "infer b8 224px"]
BASE = "resnet50"

# op name -> group of the per-op table (anything else: "other")
OP_GROUPS = {
    "GEMV/GEMM (saliency, dg, dw, rank-1 update)": ("aten::bmm", "aten::mm", "aten::baddbmm", "aten::baddbmm_"),
    "elementwise full-size (product, add, ReLU, recompute)": (
        "aten::mul",
        "aten::mul_",
        "aten::addcmul",
        "aten::add",
        "aten::add_",
        "aten::relu_",
        "aten::relu",
        "aten::threshold_backward",
        "aten::clamp_min_",
    ),
    "batch norm (C-channel and the gate's 1-channel)": (
        "aten::native_batch_norm",
        "aten::native_batch_norm_backward",
        "aten::_batch_norm_impl_index",
        "aten::_native_batch_norm_legit",
        "aten::_native_batch_norm_legit_no_training",
    ),
    "sigmoid and its backward": ("aten::sigmoid", "aten::sigmoid_backward"),
    "reductions (mean, sum)": ("aten::mean", "aten::sum"),
    "convolution": ("aten::mkldnn_convolution", "aten::convolution_backward", "aten::_convolution"),
    "copies, casts, allocation": (
        "aten::copy_",
        "aten::empty",
        "aten::empty_like",
        "aten::empty_strided",
        "aten::clone",
        "aten::contiguous",
        "aten::to",
        "aten::_to_copy",
        "aten::fill_",
        "aten::zero_",
        "aten::cat",
        "aten::ones_like",
    ),
}


def _group(op: str) -> str:
    for group, ops in OP_GROUPS.items():
        if op in ops:
            return group
    return "other aten ops"


def per_op_ms(fn: Callable[[], None]) -> Tuple[Dict[str, float], float]:
    """Self CPU ms of every aten op in one profiled call of ``fn``, and the call's wall ms."""
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        t = time.perf_counter()
        fn()
        wall = time.perf_counter() - t
    ops: Dict[str, float] = defaultdict(float)
    for e in prof.key_averages():
        if e.key.startswith("aten::"):
            ops[e.key] += e.self_cpu_time_total / 1e3
    return dict(ops), 1e3 * wall


def interleaved(
    fns: Dict[str, Callable[[], None]], repeats: int, iters: int
) -> Tuple[Dict[str, List[float]], Dict[str, List[float]]]:
    """Seconds per call of each fn, ``repeats`` rounds, every fn once per round (drift hits all alike), and the
    minor page faults per call (a fresh large CPU tensor is page-faulted in on first touch)."""
    for fn in fns.values():
        fn()
    times: Dict[str, List[float]] = {k: [] for k in fns}
    faults: Dict[str, List[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for k, fn in fns.items():
            f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
            t = time.perf_counter()
            for _ in range(iters):
                fn()
            times[k].append((time.perf_counter() - t) / iters)
            faults[k].append((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0) / iters)
    return times, faults


@contextlib.contextmanager
def checks_stubbed() -> Iterator[None]:
    """The fused path's per-call checks answered ``True`` / no hooks (experiment only: correct for a plain step)."""
    saved = (gate_blocks._SpatialGate._fused_applies, gate_blocks.has_hooks, gate_slots.has_hooks)
    gate_blocks._SpatialGate._fused_applies = lambda self, x, weight, norm=None: True  # type: ignore[method-assign]
    gate_blocks.has_hooks = gate_slots.has_hooks = lambda module: False  # type: ignore[assignment]
    try:
        yield
    finally:
        gate_blocks._SpatialGate._fused_applies, gate_blocks.has_hooks, gate_slots.has_hooks = saved


@contextlib.contextmanager
def native_norm_backward() -> Iterator[None]:
    """The fused epilogue's norm backward as ``native_batch_norm_backward`` alone, its input gradient a fresh
    tensor (the code before the in-place ``_norm_backward``; experiment only, the same values)."""
    saved = fused_gate._norm_backward

    def native(dx, c, weight, stats, batch_stats, eps, mask):
        running = (None, None) if batch_stats else stats
        return torch.ops.aten.native_batch_norm_backward(dx, c, weight, *running, *stats, batch_stats, eps, mask)

    fused_gate._norm_backward = native
    try:
        yield
    finally:
        fused_gate._norm_backward = saved


# experiment name -> the context a variant runs in (per-block rows with --variants, whole steps with --tables)
VARIANTS: Dict[str, Callable[[], contextlib.AbstractContextManager]] = {
    "checks-stubbed": checks_stubbed,
    "native-norm": native_norm_backward,
}


def _names(models: List[str], sc: Scenario) -> Tuple[str, List[str], str]:
    """(base name, gated names, build mode): inference compares folded models with the fx-folded resnet50."""
    if sc.train:
        return BASE, models, "eager"
    return BASE + FX_FUSED, models, "reparam"


def op_table(models: List[str], sc: Scenario, rounds: int) -> dict:
    """Per model: the median over ``rounds`` interleaved profiled steps of each op's self ms, and of the wall ms."""
    base, gated, mode = _names(models, sc)
    cpu = torch.device("cpu")
    fns = {name: step_fn(*build(name, sc, cpu, True, mode)[1:], sc, False, cpu) for name in [base, *gated]}
    for fn in fns.values():  # every model warm (oneDNN primitives made) before any is profiled
        fn()
        fn()
    runs: Dict[str, List[Tuple[Dict[str, float], float]]] = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            runs[name].append(per_op_ms(fn))
    out: dict = {}
    for name, profiled in runs.items():
        op_names = {op for ops, _ in profiled for op in ops}
        out[name] = {
            "ops": {op: statistics.median(ops.get(op, 0.0) for ops, _ in profiled) for op in op_names},
            "wall_ms": statistics.median(wall for _, wall in profiled),
            "wall_spread_ms": [min(w for _, w in profiled), max(w for _, w in profiled)],
        }
    return out


def _stage_blocks(model: nn.Module) -> Dict[str, nn.Module]:
    """The second block of each stage (no downsample: the repeated block)."""
    return {f"layer{i}": model.get_submodule(f"layer{i}.1") for i in range(1, 5)}


def block_table(
    models: List[str], sc: Scenario, repeats: int, bandwidth: float, variants: Tuple[str, ...] = ()
) -> List[dict]:
    """One block of each stage alone, every gated model also under each of ``variants`` (``VARIANTS``), all
    interleaved in the same rounds."""
    _, gated, mode = _names(models, sc)
    base = BASE  # in inference: resnet50 folded by salient_timm.reparameterize (fx's fold leaves no block modules)
    built = {name: build(name, sc, torch.device("cpu"), True, mode)[0] for name in [base, *gated]}
    inputs: Dict[str, torch.Tensor] = {}
    probe = built[base]
    handles = [
        blk.register_forward_pre_hook(lambda m, a, stage=stage: inputs.setdefault(stage, a[0].detach().clone()))
        for stage, blk in _stage_blocks(probe).items()
    ]
    with torch.no_grad():
        probe(torch.randn(sc.batch, 3, sc.size, sc.size).contiguous(memory_format=torch.channels_last))
    for h in handles:
        h.remove()
    rows = []
    for stage, x in inputs.items():
        fns = {}
        for name, model in built.items():
            blk = _stage_blocks(model)[stage]
            xi = x.clone().requires_grad_(sc.train)
            dy = torch.randn_like(x)

            def run(blk=blk, xi=xi, dy=dy) -> None:
                if sc.train:
                    blk(xi).backward(dy)
                else:
                    with torch.no_grad():
                        blk(xi)

            fns[name] = run
            for variant in variants if name != base else ():

                def in_variant(run=run, context=VARIANTS[variant]) -> None:
                    with context():
                        run()

                fns[f"{name} [{variant}]"] = in_variant
        times, faults = interleaved(fns, repeats, iters=3)
        n, c, h, w = x.shape
        moved = n * (3 * c * h * w + 2 * h * w) * 4 * (3 if sc.train else 1)
        base_ms = 1e3 * statistics.median(times[base])
        for name in [k for k in fns if k != base]:
            med = 1e3 * statistics.median(times[name])
            rows.append(
                {
                    "stage": stage,
                    "shape": list(x.shape),
                    "model": name,
                    "plain_ms": base_ms,
                    "plain_spread_ms": [1e3 * min(times[base]), 1e3 * max(times[base])],
                    "gated_ms": med,
                    "gated_spread_ms": [1e3 * min(times[name]), 1e3 * max(times[name])],
                    "delta_ms": med - base_ms,
                    "bound_ms": 1e3 * moved / bandwidth,
                    "plain_faults": statistics.median(faults[base]),
                    "gated_faults": statistics.median(faults[name]),
                }
            )
    return rows


def variant_table(models: List[str], sc: Scenario, repeats: int, variant: str) -> List[dict]:
    """The whole training step as it is and under ``variant`` (``VARIANTS``), interleaved; ``delta_ms``: as it is
    minus the variant."""
    rows = []
    for name in models:
        model, runner, opt, x, y = build(name, sc, torch.device("cpu"), True, "eager")
        step = step_fn(runner, opt, x, y, sc, False, torch.device("cpu"))

        def in_variant(step=step, context=VARIANTS[variant]) -> None:
            with context():
                step()

        times, _ = interleaved({"as is": step, "variant": in_variant}, repeats, iters=2)
        med = {k: 1e3 * statistics.median(v) for k, v in times.items()}
        rows.append(
            {
                "model": name,
                "variant": variant,
                "ms": med["as is"],
                "spread_ms": [1e3 * min(times["as is"]), 1e3 * max(times["as is"])],
                "variant_ms": med["variant"],
                "variant_spread_ms": [1e3 * min(times["variant"]), 1e3 * max(times["variant"])],
                "delta_ms": med["as is"] - med["variant"],
            }
        )
    return rows


def print_ops(sc: Scenario, table: dict, top: int) -> None:
    base = next(iter(table))
    for name in list(table)[1:]:
        ops, base_ops = table[name]["ops"], table[base]["ops"]
        wall = table[name]["wall_ms"] - table[base]["wall_ms"]
        kernels = sum(ops.values()) - sum(base_ops.values())
        print(f"\n{sc.name}: {name} minus {base}, profiled, ms per step")
        print(f"  wall {table[name]['wall_ms']:.1f} vs {table[base]['wall_ms']:.1f}: +{wall:.1f} ms")
        print(
            f"  aten ops' self time: {kernels:+.1f} ms; the rest (Python, dispatch, profiler): {wall - kernels:+.1f} ms"
        )
        groups: Dict[str, float] = defaultdict(float)
        for op in set(ops) | set(base_ops):
            groups[_group(op)] += ops.get(op, 0.0) - base_ops.get(op, 0.0)
        for g, d in sorted(groups.items(), key=lambda kv: -abs(kv[1])):
            print(f"  {g:55s} {d:+9.2f}")
        deltas = {op: ops.get(op, 0.0) - base_ops.get(op, 0.0) for op in set(ops) | set(base_ops)}
        print(f"  top {top} ops by difference:")
        for op, d in sorted(deltas.items(), key=lambda kv: -abs(kv[1]))[:top]:
            print(f"    {op:45s} {base_ops.get(op, 0.0):9.2f} -> {ops.get(op, 0.0):9.2f}  {d:+9.2f}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--scenarios", default=",".join(DEFAULT_SCENARIOS), help="comma-separated scenario names")
    p.add_argument("--models", default="salient_resnet50,ssa_resnet50", help="gated models, comma-separated")
    p.add_argument("--tables", default="ops,blocks,checks", help="which measurements: ops, blocks, checks, norm")
    p.add_argument("--variants", default="", help="per-block rows also under: " + ", ".join(VARIANTS))
    p.add_argument("--profile-rounds", type=int, default=3, help="interleaved profiled steps per model (medians)")
    p.add_argument("--repeats", type=int, default=5, help="interleaved repeats of the block and checks timings")
    p.add_argument("--top", type=int, default=12, help="ops listed per model in the per-op table")
    p.add_argument("--json", default=None, help="also write every measurement here")
    a = p.parse_args()
    wanted = [s.strip() for s in a.scenarios.split(",")]
    unknown = [s for s in wanted if s not in SCENARIOS]
    if unknown:
        p.error(f"unknown scenario {unknown[0]!r}; valid: {', '.join(SCENARIOS)}")
    tables = {t.strip() for t in a.tables.split(",")}
    if tables - {"ops", "blocks", "checks", "norm"}:
        p.error(f"unknown table in {a.tables!r}; valid: ops, blocks, checks, norm")
    variants = tuple(v.strip() for v in a.variants.split(",") if v.strip())
    if set(variants) - set(VARIANTS):
        p.error(f"unknown variant in {a.variants!r}; valid: {', '.join(VARIANTS)}")
    models = [m.strip() for m in a.models.split(",")]
    bandwidth = copy_bandwidth(torch.device("cpu"))
    with open("/proc/loadavg") as f:
        load = f.read().split()[0]
    header = (
        f"{platform.processor() or platform.machine()}, fp32, {torch.get_num_threads()} threads, channels_last; "
        f"torch {torch.__version__}, timm {timm.__version__}, salient-timm {salient_timm.__version__}; copy "
        f"bandwidth {bandwidth / 1e9:.1f} GB/s; load average {load} at the start; {time.strftime('%Y-%m-%d %H:%M')}"
    )
    print(header)
    results: dict = {"header": header, "scenarios": {}}
    for name in wanted:
        sc = SCENARIOS[name]
        res: dict = {}
        if "ops" in tables:
            res["ops"] = op_table(models, sc, a.profile_rounds)
            print_ops(sc, res["ops"], a.top)
        if "blocks" in tables:
            res["blocks"] = block_table(models, sc, a.repeats, bandwidth, variants)
            print(f"\n{sc.name}: one block per stage alone, ms (median, min-max)")
            for r in res["blocks"]:
                print(
                    f"  {r['stage']} {'x'.join(map(str, r['shape'])):14s} {r['model']:18s} plain {r['plain_ms']:8.2f} "
                    f"gated {r['gated_ms']:8.2f} ({r['gated_spread_ms'][0]:.2f}-{r['gated_spread_ms'][1]:.2f}) "
                    f"delta {r['delta_ms']:+7.2f}  bound {r['bound_ms']:6.2f}  x{r['gated_ms'] / r['plain_ms']:.3f}  "
                    f"page faults {r['plain_faults']:.0f} -> {r['gated_faults']:.0f}"
                )
        for table, variant in (("checks", "checks-stubbed"), ("norm", "native-norm")):
            if table not in tables or not sc.train:
                continue
            res[table] = variant_table(models, sc, a.repeats, variant)
            print(f"\n{sc.name}: the step as it is and with {variant}, ms (median, min-max)")
            for r in res[table]:
                print(
                    f"  {r['model']:18s} {r['ms']:9.1f} ({r['spread_ms'][0]:.0f}-{r['spread_ms'][1]:.0f})  {variant} "
                    f"{r['variant_ms']:9.1f} ({r['variant_spread_ms'][0]:.0f}-{r['variant_spread_ms'][1]:.0f})  "
                    f"as is - {variant} {r['delta_ms']:+.1f}"
                )
        results["scenarios"][name] = res
        if a.json:
            with open(a.json, "w") as f:
                json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
