"""What the attention blocks cost at run time: resnet50 vs seresnet50 vs salient_resnet50 vs ssa_resnet50.

    python benchmarks/block_overhead.py                 # CPU: quick set, eager, fp32 (durations: RESULTS.md)
    python benchmarks/block_overhead.py --compile       # add torch.compile rows (slow to compile on CPU)
    python benchmarks/block_overhead.py --full --json out.json   # the whole matrix (default on CUDA)
    python benchmarks/block_overhead.py --formats nchw,channels_last --scenarios "train b64 32px"
    python benchmarks/block_overhead.py --scenarios "train b16 224px"   # closer to fine-tuning (not in the quick set)
    python benchmarks/block_overhead.py --modes reparam --scenarios "infer b1 224px,infer b8 224px"  # folded

Modes: ``eager``, ``compile`` (``torch.compile``; ``--compile-backend``) and ``reparam``: inference of each model
folded by ``salient_timm.reparameterize`` (conv + BN folded, the Salient gate a 1-channel conv), interleaved with
two references, ``resnet50 (fx fuse)`` (torch's ``torch.fx.experimental.optimization.fuse``) and
``resnet50 (unfolded)`` (plain eager); ratios are to the folded resnet50.

Interleaved timing (every repeat runs every model once, so drift hits all alike), median and
spread (min-max over repeats) of img/s and latency, peak memory (CUDA: max allocated; CPU training: the
rise of a fresh process's peak resident size over one step), the activations a training step saves for
backward (``saved MB``: counted as it runs, allocator-independent), and each model's
ratio to resnet50. On CUDA: bf16 autocast + channels_last. The "bound" columns give, per model,
the bytes its attention blocks must move (salient: read x for the C->1 reduction, then read x
and the gate and write the product: 3*C*H*W + 2*H*W values per block and image; se: pool read,
then the same product) and the time that takes at this device's measured copy bandwidth: the
least overhead any implementation can reach when nothing is fused into neighbouring ops.
"""

import argparse
import json
import platform
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from functools import partial
from typing import Callable, Dict, List

import timm
import torch
from torch import nn

import salient_timm
from salient_analysis.formulas import attention_input_shapes
from salient_timm import ModelSpec

MODELS: Dict[str, ModelSpec] = {  # built through salient_timm's one seam (num_classes, stem set per scenario)
    "resnet50": ModelSpec("resnet50"),
    "seresnet50": ModelSpec("seresnet50"),
    "salient_resnet50": ModelSpec("salient_resnet50"),
    "salient_resnet50 (sum impl)": ModelSpec("salient_resnet50", attn_kwargs=dict(impl="sum")),
    "salient_resnet50 (conv impl)": ModelSpec("salient_resnet50", attn_kwargs=dict(impl="conv")),
    "ssa_resnet50": ModelSpec("ssa_resnet50"),
    "ssa_resnet50 (mean impl)": ModelSpec("ssa_resnet50", attn_kwargs=dict(impl="mean")),
}


@dataclass(frozen=True)
class Scenario:
    name: str
    train: bool
    batch: int
    size: int

    @property
    def cifar(self) -> bool:
        return self.size == 32


FULL = [
    Scenario(f"{'train' if t else 'infer'} b{b} {s}px", t, b, s)
    for s in (224, 32)
    for t, b in ((False, 1), (False, 64), (True, 64))
]
QUICK_CPU = [
    Scenario("infer b1 224px", False, 1, 224),
    Scenario("infer b8 224px", False, 8, 224),
    Scenario("infer b64 32px", False, 64, 32),
    Scenario("train b64 32px", True, 64, 32),
]
# closer to real fine-tuning (224 px inputs, a small batch): select with --scenarios "train b16 224px"
EXTRA = [Scenario("train b16 224px", True, 16, 224)]


def copy_bandwidth(device: torch.device) -> float:
    """Bytes per second of a large tensor copy (read + write counted)."""
    src = torch.empty(64 * 2**20, dtype=torch.float32, device=device).fill_(1.0)
    dst = torch.empty_like(src)
    for _ in range(3):
        dst.copy_(src)
    _sync(device)
    times = []
    for _ in range(10):
        t = time.perf_counter()
        dst.copy_(src)
        _sync(device)
        times.append(time.perf_counter() - t)
    return 2 * src.numel() * src.element_size() / statistics.median(times)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def attention_bytes(name: str, scenario: Scenario, elem_bytes: int) -> int:
    """Minimum bytes the attention blocks of model ``name`` move for one batch (see module docstring)."""
    model = MODELS[name].replace(cifar_stem=scenario.cifar).build("meta")
    total = 0
    for n, c, h, w in attention_input_shapes(model, (scenario.batch, 3, scenario.size, scenario.size)).values():
        values = 3 * c * h * w + 2 * h * w  # read for the gate, read x + gate, write the product
        total += n * values * elem_bytes * (3 if scenario.train else 1)  # backward: about twice the forward
    return total


FX_FUSED, UNFOLDED = " (fx fuse)", " (unfolded)"  # reference rows of the reparam mode


def build(
    name: str, scenario: Scenario, device: torch.device, channels_last: bool, mode: str, backend: str = "inductor"
):
    """``(model, runner, optimizer or None, x, y)``; ``mode``: eager, compile or reparam (see the docstring)."""
    num_classes = 100 if scenario.cifar else 1000
    base = name.removesuffix(FX_FUSED).removesuffix(UNFOLDED)
    model = MODELS[base].replace(num_classes=num_classes, cifar_stem=scenario.cifar).build()
    model = model.to(device).train(scenario.train)
    if mode == "reparam":
        if scenario.train:
            raise ValueError("the reparam mode is inference only")
        if name.endswith(FX_FUSED):
            from torch.fx.experimental.optimization import fuse

            model = fuse(model)
        elif not name.endswith(UNFOLDED):
            model = salient_timm.reparameterize(model)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    runner = torch.compile(model, backend=backend) if mode == "compile" else model
    opt = torch.optim.SGD(model.parameters(), lr=0.01) if scenario.train else None
    x = torch.randn(scenario.batch, 3, scenario.size, scenario.size, device=device)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, num_classes, (scenario.batch,), device=device)
    return model, runner, opt, x, y


def step_fn(runner, opt, x, y, scenario: Scenario, amp: bool, device: torch.device):
    autocast = partial(torch.autocast, device.type, dtype=torch.bfloat16, enabled=amp)

    def infer():
        with torch.no_grad(), autocast():
            runner(x)

    def train():
        with autocast():
            loss = nn.functional.cross_entropy(runner(x), y)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    return train if scenario.train else infer


def measure(
    fns: Dict[str, Callable], device: torch.device, iters: int, repeats: int, warmup: int
) -> Dict[str, List[float]]:
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    _sync(device)
    times: Dict[str, List[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            _sync(device)
            t = time.perf_counter()
            for _ in range(iters):
                fn()
            _sync(device)
            times[name].append((time.perf_counter() - t) / iters)
    return times


def saved_activation_mb(model: nn.Module, runner: Callable, x: torch.Tensor) -> float:
    """MiB of activations autograd keeps for backward in one training forward as it runs (every distinct storage
    packed by ``saved_tensors_hooks``, parameters and buffers excluded): the deterministic part of training memory,
    which the peak figures blur with allocator caching."""
    owned = {t.untyped_storage().data_ptr() for t in [*model.parameters(), *model.buffers()]}
    saved: Dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        if t.untyped_storage().data_ptr() not in owned:
            saved[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = runner(x)
    del out
    return sum(saved.values()) / 2**20


def cpu_step_peak_mb(name: str, scenario: Scenario, channels_last: bool) -> float:
    """Peak resident memory a CPU training step adds, measured in a fresh process (MiB).

    The CPU allocator keeps no statistics, so the child builds the model, runs one step (gradients and
    optimizer state exist afterwards), records its resident size, runs two more steps and reports how far
    the process's peak resident size (``ru_maxrss``) rose above that: the step's own transient memory,
    activations saved for backward included.
    """
    code = (
        f"import resource, sys; sys.argv = ['b']; import block_overhead as b, torch;"
        f"sc = b.Scenario({scenario.name!r}, {scenario.train}, {scenario.batch}, {scenario.size});"
        f"m, r, o, x, y = b.build({name!r}, sc, torch.device('cpu'), {channels_last}, 'eager');"
        f"fn = b.step_fn(r, o, x, y, sc, False, torch.device('cpu')); fn();"
        f"before = int(open('/proc/self/statm').read().split()[1]) * resource.getpagesize() / 2**10;"
        f"fn(); fn(); print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=__file__.rsplit("/", 1)[0]
    )
    return float(out.stdout.strip().splitlines()[-1]) / 2**10


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--full", action="store_true", help="every scenario (default on CUDA)")
    p.add_argument("--compile", action="store_true", help="also time torch.compile'd models (default on CUDA)")
    p.add_argument("--models", default=",".join(MODELS), help="comma-separated, resnet50 first (the ratio base)")
    p.add_argument("--scenarios", default=None, help="comma-separated names, e.g. 'infer b1 224px'")
    p.add_argument(
        "--modes", default=None, help="eager,compile,reparam (default: eager; with --compile or on CUDA eager,compile)"
    )
    p.add_argument("--compile-backend", default="inductor", help="torch.compile backend of the compile mode")
    p.add_argument(
        "--formats",
        default=None,
        help="memory formats, comma-separated: nchw, channels_last (default: channels_last, the faster "
        "on CPU and CUDA; give both for side-by-side rows, interleaved in one run)",
    )
    p.add_argument("--repeats", type=int, default=5, help="interleaved repeats (median and min-max over them)")
    p.add_argument(
        "--iters",
        type=int,
        default=None,
        help="calls per timing (default 20 on CUDA; on CPU 3, and 2 for training steps)",
    )
    p.add_argument("--json", default=None, help="also write the results here")
    p.add_argument("--no-cpu-memory", action="store_true", help="skip the per-process CPU peak-memory measurement")
    a = p.parse_args()
    device = torch.device(a.device)
    cuda = device.type == "cuda"
    scenarios = FULL if (a.full or cuda) else QUICK_CPU
    if a.scenarios:
        wanted = [w.strip() for w in a.scenarios.split(",")]
        known = list({sc.name: sc for sc in FULL + QUICK_CPU + EXTRA}.values())
        scenarios = [sc for sc in known if sc.name in wanted]
        scenarios = list({sc.name: sc for sc in scenarios}.values())
        if not scenarios:
            p.error(f"no scenario matches {a.scenarios!r}; names: {', '.join(sc.name for sc in known)}")
    modes = a.modes.split(",") if a.modes else ["eager"] + (["compile"] if (a.compile or cuda) else [])
    iters = a.iters or (20 if cuda else 3)
    formats = [f.strip() for f in (a.formats or "channels_last").split(",")]
    if set(formats) - {"nchw", "channels_last"}:
        p.error(f"unknown format in {a.formats!r}; valid: nchw, channels_last")
    names = [m.strip() for m in a.models.split(",")]
    bandwidth = copy_bandwidth(device)
    header = (
        f"device {torch.cuda.get_device_name(device) if cuda else platform.processor() or platform.machine()} "
        f"({'bf16 autocast' if cuda else f'fp32, {torch.get_num_threads()} threads'}); "
        f"torch {torch.__version__}, timm {timm.__version__}, salient-timm {salient_timm.__version__}; "
        f"copy bandwidth {bandwidth / 1e9:.1f} GB/s; {a.repeats} repeats x {iters} calls, interleaved"
    )
    print(header)
    if set(modes) - {"eager", "compile", "reparam"}:
        p.error(f"unknown mode in {a.modes!r}; valid: eager, compile, reparam")
    results = run_matrix(
        names,
        scenarios,
        modes,
        formats,
        device,
        a.repeats,
        iters,
        a.iters is not None,
        a.compile_backend,
        cpu_memory=not a.no_cpu_memory,
        bandwidth=bandwidth,
        echo=True,
    )
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"header": header, "bandwidth_Bps": bandwidth, "results": results}, f, indent=2)


def run_matrix(
    names: List[str],
    scenarios: List[Scenario],
    modes: List[str],
    formats: List[str],
    device: torch.device,
    repeats: int,
    iters: int,
    iters_given: bool = False,
    backend: str = "inductor",
    cpu_memory: bool = True,
    bandwidth: float = 0.0,
    echo: bool = False,
) -> List[dict]:
    """One interleaved measurement per (mode, scenario) over every (model, format) pair; rows as in ``--json``.

    ``names[0]`` is the ratio base. CUDA: bf16 autocast and peak memory per step; CPU: fp32 and (eager training,
    ``cpu_memory``) the peak resident memory of a step in a fresh process."""
    cuda = device.type == "cuda"
    elem_bytes = 2 if cuda else 4
    results: List[dict] = []
    for mode, sc in ((m, sc) for m in modes for sc in scenarios):
        if mode == "reparam" and sc.train:
            continue  # a folded model is for inference
        # every (model, format) pair in one interleaved measurement: format ratios come from the same run
        run_names = names + ([names[0] + FX_FUSED, names[0] + UNFOLDED] if mode == "reparam" else [])
        keys = [(n, f) for f in formats for n in run_names]
        built = {k: build(k[0], sc, device, k[1] == "channels_last", mode, backend) for k in keys}
        fns = {k: step_fn(r, o, x, y, sc, cuda, device) for k, (m, r, o, x, y) in built.items()}
        peaks = {}
        if cuda:
            for k, fn in fns.items():
                torch.cuda.reset_peak_memory_stats(device)
                fn()
                _sync(device)
                peaks[k] = torch.cuda.max_memory_allocated(device) / 2**20
        elif sc.train and cpu_memory and mode == "eager":
            peaks = {k: cpu_step_peak_mb(k[0], sc, k[1] == "channels_last") for k in keys}
        saved = {}
        if sc.train and mode == "eager":
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cuda):
                saved = {k: saved_activation_mb(m, r, x) for k, (m, r, o, x, y) in built.items()}
        n_iter = iters if (cuda or not sc.train or iters_given) else 2  # a CPU training step takes seconds
        times = measure(fns, device, n_iter, repeats, warmup=2 if cuda else 1)
        for n, fmt in keys:
            med = statistics.median(times[(n, fmt)])
            base = statistics.median(times[(names[0], fmt)])
            nchw = statistics.median(times[(n, "nchw")]) if "nchw" in formats else med
            moved = attention_bytes(n.removesuffix(FX_FUSED).removesuffix(UNFOLDED), sc, elem_bytes)
            results.append(
                {
                    "mode": mode,
                    "format": fmt,
                    "scenario": sc.name,
                    "model": n,
                    "img_per_s": sc.batch / med,
                    "latency_ms": 1e3 * med,
                    "spread_ms": [1e3 * min(times[(n, fmt)]), 1e3 * max(times[(n, fmt)])],
                    "ratio_time": med / base,
                    "ratio_to_nchw": med / nchw,
                    "overhead_ms": 1e3 * (med - base),
                    "bound_ms": 1e3 * moved / bandwidth if bandwidth else None,
                    "peak_mem_mb": peaks.get((n, fmt)),
                    "saved_mb": saved.get((n, fmt)),
                }
            )
        if echo:
            print_table([r for r in results if (r["mode"], r["scenario"]) == (mode, sc.name)], f"{mode}, {sc.name}")
    return results


def print_table(rows: List[dict], title: str) -> None:
    print(f"\n{title}")
    print(
        f"{'model':30s} {'format':13s} {'img/s':>9s} {'ms':>9s} {'min-max ms':>17s} {'x resnet50':>10s} "
        f"{'x nchw':>7s} {'overhead':>9s} {'bound':>7s} {'peak MB':>8s} {'saved MB':>9s}"
    )
    for r in rows:
        peak = f"{r['peak_mem_mb']:.0f}" if r["peak_mem_mb"] is not None else "-"
        saved = f"{r['saved_mb']:.1f}" if r.get("saved_mb") is not None else "-"
        print(
            f"{r['model']:30s} {r['format']:13s} {r['img_per_s']:9.1f} {r['latency_ms']:9.2f} "
            f"{r['spread_ms'][0]:8.2f}-{r['spread_ms'][1]:<8.2f} {r['ratio_time']:10.3f} {r['ratio_to_nchw']:7.3f} "
            f"{r['overhead_ms']:8.2f}ms {r['bound_ms'] or 0:6.2f}ms {peak:>8s} {saved:>9s}"
        )


if __name__ == "__main__":
    main()
