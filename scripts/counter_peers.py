"""Our counter beside the counters people use, on a fixed list of models (issue 32 item 6); writes docs/counters.md.

    pip install ptflops torchinfo calflops transformers accelerate   # optional peers; a missing one is skipped
    python scripts/counter_peers.py [--out docs/counters.md]

Every tool counts the same model object (CPU, eval, weights initialised, seed 0) on one ``torch.ones(1, 3, 224, 224)``
image, forward only, and reports what it calls MACs (fvcore's "flops" are MACs; torch's ``FlopCounterMode`` FLOPs are
halved). Ours is ``salient_analysis.counting.count_cost``: MACs and, beside them, the elementwise ops the others
leave out or fold in. Each model holds one construct where counters part ways:

| model | construct |
|---|---|
| resnet50 | convs, BatchNorm, ReLU, pooling: every tool's home ground |
| salient_resnet50 | the Salient gate: a 1-channel conv, sigmoid and a broadcast multiply (functional) |
| resnext50_32x4d | grouped convs |
| vit_small_patch16_224 | fused attention (``F.scaled_dot_product_attention``), LayerNorm, GELU |
| convnext_tiny | depthwise 7x7 convs, LayerNorm over channels, a layer-scale multiply |
| sequencer2d_s | bidirectional LSTMs |

The table is regenerated whole; the prose of docs/counters.md after the marker line is kept.
"""

import argparse
import contextlib
import copy
import datetime
import io
import logging
import platform
import sys
import warnings
from typing import Callable, Dict, List, Optional

import timm
import torch
from kept_prose import write_keeping_prose  # scripts/kept_prose.py
from torch import nn

import salient_timm  # noqa: F401  (registers salient_resnet50)
from salient_analysis.counting import count_cost

MODELS = (
    "resnet50",
    "salient_resnet50",
    "resnext50_32x4d",
    "vit_small_patch16_224",
    "convnext_tiny",
    "sequencer2d_s",
)
MARKER = "<!-- the table above is written by scripts/counter_peers.py; what follows is kept -->"
SHAPE = (1, 3, 224, 224)


def ours(model: nn.Module) -> str:
    cost = count_cost(model, SHAPE).total
    return f"{cost.macs / 1e9:.2f} (+{cost.elementwise / 1e9:.3f} G elementwise)"


def fvcore(model: nn.Module) -> float:
    from fvcore.nn import FlopCountAnalysis

    logging.getLogger("fvcore").setLevel(logging.ERROR)
    return FlopCountAnalysis(model, torch.ones(SHAPE)).unsupported_ops_warnings(False).total()


def thop(model: nn.Module) -> float:
    from thop import profile

    return profile(copy.deepcopy(model), inputs=(torch.ones(SHAPE),), verbose=False)[0]


def ptflops(model: nn.Module) -> float:
    from ptflops import get_model_complexity_info

    macs, _ = get_model_complexity_info(
        model, SHAPE[1:], as_strings=False, print_per_layer_stat=False, verbose=False, backend="pytorch"
    )
    return macs


def ptflops_aten(model: nn.Module) -> float:
    from ptflops import get_model_complexity_info

    macs, _ = get_model_complexity_info(
        model, SHAPE[1:], as_strings=False, print_per_layer_stat=False, verbose=False, backend="aten"
    )
    return macs


def torchinfo(model: nn.Module) -> float:
    from torchinfo import summary

    return summary(model, input_size=SHAPE, verbose=0).total_mult_adds


def calflops(model: nn.Module) -> float:
    from calflops import calculate_flops

    _, macs, _ = calculate_flops(
        model, input_shape=SHAPE, output_as_string=False, print_results=False, print_detailed=False
    )
    return macs


def flop_counter_mode(model: nn.Module) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        model(torch.ones(SHAPE))
    return counter.get_total_flops() / 2


TOOLS: Dict[str, Callable[[nn.Module], object]] = {
    "ours (MACs)": ours,
    "fvcore": fvcore,
    "thop": thop,
    "ptflops (pytorch)": ptflops,
    "ptflops (aten)": ptflops_aten,
    "torchinfo": torchinfo,
    "calflops": calflops,
    "FlopCounterMode / 2": flop_counter_mode,
}


def run(tool: Callable[[nn.Module], object], model: nn.Module) -> str:
    """The tool's count in G, or why there is none (not installed, or its own error)."""
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), torch.no_grad():
        warnings.simplefilter("ignore")
        try:
            value = tool(model)
        except ImportError as e:
            return f"not installed ({e.name})"
        except Exception as e:  # a peer's failure is a result of the comparison
            return f"fails: {type(e).__name__}"
    return value if isinstance(value, str) else f"{float(value) / 1e9:.2f}"  # type: ignore[arg-type]


def version(package: str) -> Optional[str]:
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as v

    try:
        return v(package)
    except PackageNotFoundError:
        return None


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--out", default="docs/counters.md")
    args = parser.parse_args()
    rows: List[List[str]] = []
    for name in MODELS:
        torch.manual_seed(0)
        model = timm.create_model(name).eval()
        rows.append([name] + [run(tool, model) for tool in TOOLS.values()])
        print(" | ".join(rows[-1]), flush=True)
    versions = ", ".join(
        f"{p} {version(p) or 'not installed'}"
        for p in ("torch", "timm", "fvcore", "thop", "ptflops", "torchinfo", "calflops")
    )
    table = [
        "# FLOP counters side by side",
        "",
        f"command: `python {' '.join(sys.argv)}`  ",
        f"date: {datetime.date.today().isoformat()}; device: CPU ({platform.machine()}); python "
        f"{platform.python_version()}; {versions}",
        "",
        "GMACs of one forward pass at 1x3x224x224, as each tool reports them (see the script's docstring):",
        "",
        "| model | " + " | ".join(TOOLS) + " |",
        "|---|" + "---:|" * len(TOOLS),
        *["| " + " | ".join(row) + " |" for row in rows],
        "",
        MARKER,
    ]
    write_keeping_prose(args.out, table, MARKER)


if __name__ == "__main__":
    main()
