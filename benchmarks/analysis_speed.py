"""Time ``salient-analyze compare`` against a bare fvcore count of the same models, in one run.

    python benchmarks/analysis_speed.py [--repeats 5] [--input-size 224]

``compare`` here is the full command path (click parsing, meta-device builds of each model
and its base, torch FlopCounterMode with our elementwise formulas, rendering). The fvcore
baseline builds the same three models on CPU with weights and runs ``FlopCountAnalysis``
(a TorchScript trace) on each: the usual way people count FLOPs. Prints median and spread
of repeated runs and the ratio.
"""

import argparse
import logging
import platform
import statistics
import time
import warnings

import timm
import torch
from click.testing import CliRunner

import salient_timm
from salient_analysis.cli import main


def time_compare(models: str, attns: str, size: int) -> float:
    start = time.perf_counter()
    result = CliRunner().invoke(
        main, ["compare", "--model", models, "--attn", attns, "--input-size", str(size), "--format", "json"]
    )
    elapsed = time.perf_counter() - start
    assert result.exit_code == 0, result.output
    return elapsed


def time_fvcore(size: int) -> float:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from fvcore.nn import FlopCountAnalysis

        logging.getLogger("fvcore").setLevel(logging.ERROR)
        start = time.perf_counter()
        for attn in ("none", "se", "salient"):
            model = timm.create_model("resnet50").eval()
            if attn != "none":
                salient_timm.inject_attention(model, attn)
            analysis = FlopCountAnalysis(model, torch.zeros(1, 3, size, size))
            analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
            analysis.total()
        return time.perf_counter() - start


def main_() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--input-size", type=int, default=224)
    args = parser.parse_args()
    time_compare("resnet50", "none", args.input_size)  # warm-up: imports, first-call caches
    time_fvcore(args.input_size)
    ours, fv = [], []
    for _ in range(args.repeats):  # interleaved, so drift hits both alike
        ours.append(time_compare("resnet50", "none,se,salient", args.input_size))
        fv.append(time_fvcore(args.input_size))
    print(
        f"device: CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads); "
        f"torch {torch.__version__}, timm {timm.__version__}; input 1x3x{args.input_size}x{args.input_size}; "
        f"{args.repeats} repeats"
    )
    print(f"{'what':58s} {'median s':>9s} {'min s':>7s} {'max s':>7s}")
    rows = [
        ("salient-analyze compare resnet50 x none,se,salient (meta)", ours),
        ("bare fvcore FlopCountAnalysis of the same 3 models (CPU)", fv),
    ]
    for name, ts in rows:
        print(f"{name:58s} {statistics.median(ts):9.3f} {min(ts):7.3f} {max(ts):7.3f}")
    print(f"ratio compare / fvcore (median): {statistics.median(ours) / statistics.median(fv):.2f}x")


if __name__ == "__main__":
    main_()
