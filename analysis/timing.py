"""Measured cost on a real device: time per block and per step, peak memory, and the device's roofline.

- ``device_peaks``: the device's copy bandwidth (a 64 MiB tensor copy, read + write) and matmul
  throughput (an n x n fp32 ``mm``, 2·n³ FLOPs), best of repeated runs: practical peaks, below the
  data sheet's (convolutions in oneDNN or cuDNN can beat a plain ``mm``; give the peaks as options then).
- ``time_modules``: forward and backward time of chosen submodules, each run in isolation on the input
  it saw in a real forward pass (captured once), and the whole step; several models are interleaved
  (every repeat runs every model once), warm-up first, median and min-max over repeats.
- ``peak_step_bytes``: the peak memory one training step allocates above what existed before it:
  CUDA ``max_memory_allocated``; CPU torch's memory profiler (``torch.profiler``, ``profile_memory``).

Times are wall clock with device synchronisation. Timing is not counting: run it alone on a quiet machine.
"""

import os
import statistics
import time
from dataclasses import dataclass
from typing import Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import torch
from torch import nn

__all__ = ["Peaks", "Timing", "device_peaks", "remeasured", "time_modules", "peak_step_bytes"]


@dataclass(frozen=True)
class Peaks:
    """What the device can do at most: FLOP/s of a large fp32 matmul, bytes/s of a large copy."""

    flops_per_s: float
    bytes_per_s: float
    measured: bool = True
    drift: float = 0.0  # measured twice (before and after the timing): the larger relative change of the two peaks

    def roofline_s(self, flops: float, nbytes: float) -> float:
        """The least time ``flops`` and ``nbytes`` can take: max(compute time, memory time)."""
        return max(flops / self.flops_per_s, nbytes / self.bytes_per_s)


@dataclass(frozen=True)
class Timing:
    """Seconds per call over repeats: median and min-max."""

    samples: Tuple[float, ...]

    @property
    def median(self) -> float:
        return statistics.median(self.samples)

    @property
    def spread(self) -> Tuple[float, float]:
        return min(self.samples), max(self.samples)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _best_seconds(fn: Callable[[], None], device: torch.device, repeats: int) -> float:
    """Fastest of ``repeats`` timed calls after one warm-up: a peak is what the device can reach."""
    fn()
    _sync(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - start)
    return min(times)


def device_peaks(device: torch.device, matmul_size: int = 2048, repeats: int = 5) -> Peaks:
    """Measure copy bandwidth and fp32 matmul throughput on ``device``."""
    src = torch.ones(16 * 2**20, device=device)  # 64 MiB
    dst = torch.empty_like(src)
    copy_s = _best_seconds(lambda: dst.copy_(src), device, repeats)
    a = torch.randn(matmul_size, matmul_size, device=device)
    b = torch.randn(matmul_size, matmul_size, device=device)
    mm_s = _best_seconds(lambda: torch.mm(a, b), device, repeats)
    return Peaks(flops_per_s=2 * matmul_size**3 / mm_s, bytes_per_s=2 * src.numel() * src.element_size() / copy_s)


def remeasured(before: Peaks, after: Peaks) -> Peaks:
    """The better of two measurements of the same device's peaks, with how much they differ as ``drift``
    (a steady, idle machine gives about 0; another job starting or stopping in between gives more)."""
    drift = max(
        abs(a - b) / max(a, b)
        for a, b in ((before.flops_per_s, after.flops_per_s), (before.bytes_per_s, after.bytes_per_s))
    )
    return Peaks(max(before.flops_per_s, after.flops_per_s), max(before.bytes_per_s, after.bytes_per_s), drift=drift)


def _capture_inputs(model: nn.Module, names: Sequence[str], x: torch.Tensor) -> Dict[str, Tuple[torch.Tensor, bool]]:
    """``{name: (a copy of the module's input, whether it depends on parameters, i.e. needs a gradient)}``."""
    modules = dict(model.named_modules())
    captured: Dict[str, Tuple[torch.Tensor, bool]] = {}
    handles = [
        modules[n].register_forward_pre_hook(
            lambda mod, args, n=n: captured.__setitem__(n, (args[0].detach().clone(), args[0] is not x))
        )
        for n in names
    ]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in handles:
            h.remove()
    return captured


def time_modules(
    models: Mapping[str, nn.Module],
    names: Mapping[str, Sequence[str]],
    x: torch.Tensor,
    train: bool,
    repeats: int = 5,
    warmup: int = 1,
    progress: Optional[Callable[[int], None]] = None,
) -> Dict[Tuple[str, str, str], Timing]:
    """``{(model label, module name or "" for the step, "forward"|"backward"): Timing}``.

    ``names[label]``: the submodules of that model to time in isolation. ``train``: train mode and a
    backward pass (of a fixed random output gradient; the step's of ``out.sum()``); else eval, no_grad.
    ``progress(r)`` is called after each round ``r`` (warm-up rounds included) of every job.
    """
    device = x.device
    jobs: List[Tuple[str, str, nn.Module, torch.Tensor, bool]] = []
    for label, model in models.items():
        model.train(train)
        inputs = _capture_inputs(model, names[label], x)
        modules = dict(model.named_modules())
        jobs.append((label, "", model, x, False))
        jobs += [(label, n, modules[n], *inputs[n]) for n in names[label]]
    grads: Dict[Tuple[str, str], torch.Tensor] = {}
    samples: Dict[Tuple[str, str, str], List[float]] = {}

    def run(label: str, name: str, module: nn.Module, inp: torch.Tensor, needs_grad: bool, record: bool) -> None:
        with torch.set_grad_enabled(train):
            # a fresh non-leaf copy each call (made before the clock starts): in-place first ops (ReLU) are legal
            feed = inp.detach().requires_grad_(train and needs_grad).clone() if name else inp
            _sync(device)
            start = time.perf_counter()
            out = module(feed)
            _sync(device)
            mid = time.perf_counter()
            if train:
                grad = grads.setdefault((label, name), torch.randn_like(out) if name else torch.ones_like(out))
                out.backward(grad)
                _sync(device)
            end = time.perf_counter()
        module.zero_grad(set_to_none=True)
        if record:
            samples.setdefault((label, name, "forward"), []).append(mid - start)
            if train:
                samples.setdefault((label, name, "backward"), []).append(end - mid)

    for r in range(warmup + repeats):
        for job in jobs:
            run(*job, record=r >= warmup)
        if progress is not None:
            progress(r)
    return {key: Timing(tuple(v)) for key, v in samples.items()}


def peak_step_bytes(model: nn.Module, x: torch.Tensor, train: bool) -> int:
    """Peak bytes one step (forward, and backward of ``out.sum()`` if ``train``) allocates above the start."""
    device = x.device

    def step() -> None:
        with torch.set_grad_enabled(train):
            out = model(x)
            if train:
                out.sum().backward()
        model.zero_grad(set_to_none=True)

    model.train(train)
    step()  # warm-up: lazy allocations (e.g. oneDNN workspaces, CUDA context) happen before measuring
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        start = torch.cuda.memory_allocated(device)
        step()
        torch.cuda.synchronize(device)
        return torch.cuda.max_memory_allocated(device) - start
    # kineto logs "gpuGetDeviceCount failed" (level 4: error) on CPU-only machines with a CUDA build of torch, and
    # "USDT: profiler_start/stop" (level 5) on every use; 6 silences both. Read at its first use, so set before it
    # (a user's own KINETO_LOG_LEVEL wins)
    os.environ.setdefault("KINETO_LOG_LEVEL", "6")
    from torch.profiler import ProfilerActivity, profile
    from torch.profiler._memory_profiler import Action

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True, record_shapes=True, with_stack=True) as prof:
        step()
    current = peak = 0
    for _, action, _, size in prof._memory_profile().timeline:  # torch's memory timeline (export_memory_timeline)
        if action == Action.CREATE:
            current += size
        elif action == Action.DESTROY:
            current -= size
        peak = max(peak, current)
    return peak
