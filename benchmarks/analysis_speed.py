"""How long a user waits for a count: ``salient-analyze`` against bare fvcore and bare timm, each in a fresh process.

    python benchmarks/analysis_speed.py [--repeats 5] [--models resnet50,vit_small_patch16_224,convnext_tiny]
                                        [--rows params,create,flops,fvcore,compare,fvcore x2]
                                        [--out benchmarks/results_cpu_analysis_speed_DATE.json]

Every row is one fresh ``python`` process (imports included: what a user waits for at the prompt), timed
from outside by wall clock. Rows run interleaved, model by model and repeat by repeat, so the host's drift
hits all of them alike; the ratios are between medians of the same run.

| row | command, in a fresh process | target (issue 32) |
|---|---|---|
| params | ``salient-analyze params -m M --format json`` | <= 1.2x ``create`` |
| create | ``import timm; timm.create_model(M)`` (the bare build, weights initialised) | |
| flops | ``salient-analyze flops -m M --format json`` | <= 1.0x ``fvcore`` |
| fvcore | ``timm.create_model(M)`` + fvcore ``FlopCountAnalysis(model, 1x3x224x224).total()`` | |
| compare | ``salient-analyze compare -m M --attn none,salient --format json`` (1) | <= 1.0x ``fvcore x2`` |
| fvcore x2 | the fvcore count of each model compare counts: M and M with ``inject_attention(model, "salient")`` (1) | |

(1) A model without residual blocks (ViT, ConvNeXt) takes no gate: compare counts it alone (``--attn none``) and
``fvcore x2`` is then one fvcore count.

Resumable: each finished (repeat, model) block is appended to --out (JSON lines) and skipped on a rerun.
"""

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from typing import Dict, List, Sequence

BARE_CREATE = "import timm; timm.create_model({model!r})"
BARE_FVCORE = (
    "import logging, warnings; warnings.simplefilter('ignore'); import timm, torch; "
    "from fvcore.nn import FlopCountAnalysis; logging.getLogger('fvcore').setLevel(logging.ERROR)\n"
    "{prelude}"
    "for attn in {attns!r}:\n"
    "    m = timm.create_model({model!r}).eval()\n"
    "    if attn != 'none': salient_timm.inject_attention(m, attn)\n"
    "    a = FlopCountAnalysis(m, torch.zeros(1, 3, 224, 224))\n"
    "    a.unsupported_ops_warnings(False).uncalled_modules_warnings(False); a.total()\n"
)


RETROFITTABLE = ("resnet", "seresnet", "resnext", "wide_resnet")  # name prefixes: compare adds a salient row


def commands(model: str) -> Dict[str, List[str]]:
    """The rows of the module docstring's table: name -> argv, all for one model."""
    attns = ("none", "salient") if model.startswith(RETROFITTABLE) else ("none",)
    py = sys.executable
    script = os.path.join(os.path.dirname(py), "salient-analyze")  # the console script a user types
    analyze = [script] if os.path.exists(script) else [py, "-m", "salient_analysis.cli"]
    return {
        "params": analyze + ["params", "-m", model, "--format", "json"],
        "create": [py, "-c", BARE_CREATE.format(model=model)],
        "flops": analyze + ["flops", "-m", model, "--format", "json"],
        "fvcore": [py, "-c", BARE_FVCORE.format(prelude="", attns=("none",), model=model)],
        "compare": analyze + ["compare", "-m", model, "--attn", ",".join(attns), "--format", "json"],
        "fvcore x2": [
            py,
            "-c",
            BARE_FVCORE.format(prelude="import salient_timm\n", attns=attns, model=model),
        ],
    }


def wall(argv: Sequence[str]) -> float:
    """Seconds one fresh process takes, start to exit; a failing command stops the benchmark."""
    start = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv[:6])} ... failed ({done.returncode}): {done.stderr.strip()[-400:]}")
    return elapsed


def summary(records: List[dict], models: Sequence[str]) -> str:
    """Markdown table: median, min and max per row and model, and the two ratios against their targets."""
    lines = [
        "| model | row | median s | min s | max s | n |",
        "|---|---|---:|---:|---:|---:|",
    ]
    ratios = ["", "| model | params / create | flops / fvcore | compare / fvcore x2 |", "|---|---:|---:|---:|"]
    for model in models:
        times: Dict[str, List[float]] = {}
        for r in records:
            if r["model"] == model:
                for row, t in r["seconds"].items():
                    times.setdefault(row, []).append(t)
        if not times:
            continue
        med = {row: statistics.median(ts) for row, ts in times.items()}
        for row, ts in times.items():
            lines.append(f"| {model} | {row} | {med[row]:.2f} | {min(ts):.2f} | {max(ts):.2f} | {len(ts)} |")
        ratios.append(
            f"| {model} | {_ratio(med, 'params', 'create', 1.2)} | {_ratio(med, 'flops', 'fvcore', 1.0)} | "
            f"{_ratio(med, 'compare', 'fvcore x2', 1.0)} |"
        )
    return "\n".join(lines + ratios)


def _ratio(medians: Dict[str, float], row: str, bare: str, target: float) -> str:
    if row not in medians or bare not in medians:
        return "not run"
    return f"{medians[row] / medians[bare]:.2f}x (target <= {target}x)"


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--models", default="resnet50,vit_small_patch16_224,convnext_tiny")
    parser.add_argument("--rows", default=",".join(commands("resnet50")), help="comma-separated rows to time")
    stamp = datetime.date.today().isoformat()
    parser.add_argument("--out", default=f"benchmarks/results_cpu_analysis_speed_{stamp}.jsonl")
    args = parser.parse_args()
    models = args.models.split(",")
    rows = args.rows.split(",")
    unknown = sorted(set(rows) - set(commands("resnet50")))
    if unknown:
        parser.error(f"--rows: unknown {', '.join(unknown)}; choose from {', '.join(commands('resnet50'))}")

    done: List[dict] = []
    if os.path.exists(args.out):
        with open(args.out) as f:
            done = [json.loads(line) for line in f if line.strip()]
    have = {(r["repeat"], r["model"]) for r in done}
    for model in models:  # warm the OS file cache once, untimed
        wall(commands(model)["create"])
    for repeat in range(args.repeats):
        for model in models:
            if (repeat, model) in have:
                continue
            seconds = {row: wall(argv) for row, argv in commands(model).items() if row in rows}
            record = {"repeat": repeat, "model": model, "seconds": seconds}
            done.append(record)
            with open(args.out, "a") as f:
                f.write(json.dumps(record) + "\n")
            print(f"repeat {repeat} {model}: " + ", ".join(f"{k} {v:.2f} s" for k, v in seconds.items()), flush=True)

    import timm
    import torch

    print(
        f"\ncommand: python {' '.join(sys.argv)}\ndate: {stamp}; device: CPU "
        f"({platform.processor() or platform.machine()}, {os.cpu_count()} cores); python {platform.python_version()}, "
        f"torch {torch.__version__}, timm {timm.__version__}; every row a fresh process\n"
    )
    print(summary(done, models))


if __name__ == "__main__":
    main()
