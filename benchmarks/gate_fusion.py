"""Does torch.compile fuse the gate? Kernels inductor generates for one block's forward + backward.

    python benchmarks/gate_fusion.py                  # SalientBlock and SSABlock, every impl, CPU
    python benchmarks/gate_fusion.py --shape 8,256,16,16 --device cuda

For each gate implementation: the aten ops eager autograd dispatches for forward + backward, and
the kernels inductor emits for the same (generated fused kernels, and calls into external
libraries such as GEMM). Fewer kernels than eager ops means the compiled gate fuses; inductor
compiles the ``fused`` impl through its plain GEMV ops (the custom autograd function is an
eager-only path).
"""

import argparse
import re
from collections import Counter
from typing import Dict

import torch
from torch._inductor.utils import run_and_get_code
from torch.utils._python_dispatch import TorchDispatchMode

from salient_timm import SalientBlock, SSABlock

FREE = {
    "view",
    "_unsafe_view",
    "reshape",
    "t",
    "transpose",
    "permute",
    "expand",
    "squeeze",
    "unsqueeze",
    "detach",
    "alias",
    "as_strided",
    "empty",
    "empty_like",
    "empty_strided",
    "lift_fresh",
}

BLOCKS = {
    "salient fused (default)": lambda c: SalientBlock(c),
    "salient sum": lambda c: SalientBlock(c, impl="sum"),
    "salient conv (seed)": lambda c: SalientBlock(c, impl="conv"),
    "ssa fused (default)": lambda c: SSABlock(c),
    "ssa mean (literal)": lambda c: SSABlock(c, impl="mean"),
}


class _OpCounter(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.ops: Counter = Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func._overloadpacket.__name__
        if name not in FREE:
            self.ops[name] += 1
        return func(*args, **(kwargs or {}))


def _step(block: torch.nn.Module, x: torch.Tensor) -> None:
    block(x).sum().backward()


def eager_ops(block: torch.nn.Module, x: torch.Tensor) -> int:
    """aten compute ops (views and allocations excluded) of one eager forward + backward."""
    counter = _OpCounter()
    with counter:
        _step(block, x)
    return sum(counter.ops.values())


def compiled_kernels(block: torch.nn.Module, x: torch.Tensor) -> Dict[str, int]:
    """Generated kernels and external calls in inductor's code for forward + backward."""
    torch._dynamo.reset()
    compiled = torch.compile(block, fullgraph=True)
    _, sources = run_and_get_code(_step, compiled, x)
    code = "\n".join(sources)
    generated = set(
        re.findall(r"\b(cpp_fused_\w+|triton_\w+_fused_\w+|triton_poi_\w+|triton_red_\w+|triton_per_\w+)\s*=", code)
    )
    external = len(re.findall(r"extern_kernels\.\w+\(", code))
    return {"generated": len(generated), "external": external}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--shape", default="8,256,16,16", help="N,C,H,W of the block input")
    p.add_argument("--device", default="cpu")
    a = p.parse_args()
    shape = tuple(int(s) for s in a.shape.split(","))
    print(f"{'block':26s} {'eager ops':>9s} {'inductor kernels':>16s} {'extern calls':>12s}")
    for name, make in BLOCKS.items():
        block = make(shape[1]).to(a.device).train()
        x = torch.randn(shape, device=a.device).contiguous(memory_format=torch.channels_last).requires_grad_()
        ops = eager_ops(block, x)
        k = compiled_kernels(block, x)
        print(f"{name:26s} {ops:9d} {k['generated']:16d} {k['external']:12d}")


if __name__ == "__main__":
    main()
