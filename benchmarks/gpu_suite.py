"""One command for a GPU: what the attention blocks cost in training and at inference, folded or not.

    python benchmarks/gpu_suite.py --out DIR            # CUDA: bf16 autocast, channels_last
    python benchmarks/gpu_suite.py --out DIR --smoke    # CPU, tiny sizes, compile backend "eager" (run by the tests)

For resnet50, seresnet50, salient_resnet50 and ssa_resnet50, interleaved (``block_overhead.run_matrix``: every
repeat runs every model once; ratios to resnet50 from the same run; medians and min-max):

| part | scenario (smoke) | modes |
|---|---|---|
| train | training step, b64 224 px (b2 32 px) | eager, compile |
| infer | inference, b1 and b64 224 px (b2 32 px) | eager, compile (b64 only) |
| reparam | inference folded by ``salient_timm.reparameterize``, with fx-fused and unfolded resnet50 | reparam |
| profile | ``salient-analyze profile`` of resnet50+salient, fp32, b32 224 px (b2 32 px) | per block and gate |

Peak memory: CUDA ``max_memory_allocated`` per step. Writes ``DIR/gpu_suite.json`` and ``DIR/RESULTS.md``, stamped
with the command, date, versions and device. Resumable: each part is saved when it ends, and a rerun with the same
``--out`` skips the parts already there.
"""

import argparse
import datetime
import json
import os
import platform
import sys
import time
from typing import Dict, List

import timm
import torch
from block_overhead import Scenario, copy_bandwidth, run_matrix

import salient_timm
from salient_analysis.profiling import ProfileOptions, profile_models, trust_warnings
from salient_analysis.render import render
from salient_analysis.reports import profile_report
from salient_analysis.spec import AnalysisTarget

MODELS = ["resnet50", "seresnet50", "salient_resnet50", "ssa_resnet50"]


def parts(smoke: bool) -> Dict[str, dict]:
    """Each part: its scenarios and modes (``block_overhead.run_matrix``), or the profile's size."""
    if smoke:
        small = Scenario("infer b2 32px", False, 2, 32)
        return {
            "train": dict(scenarios=[Scenario("train b2 32px", True, 2, 32)], modes=["eager", "compile"]),
            "infer": dict(scenarios=[small], modes=["eager", "compile"]),
            "reparam": dict(scenarios=[small], modes=["reparam"]),
            "profile": dict(size=32, batch=2),
        }
    b1, b64 = Scenario("infer b1 224px", False, 1, 224), Scenario("infer b64 224px", False, 64, 224)
    return {
        "train": dict(scenarios=[Scenario("train b64 224px", True, 64, 224)], modes=["eager", "compile"]),
        "infer": dict(scenarios=[b1, b64], modes=["eager"]),
        "infer-compiled": dict(scenarios=[b64], modes=["compile"]),
        "reparam": dict(scenarios=[b1, b64], modes=["reparam"]),
        "profile": dict(size=224, batch=32),
    }


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)} (bf16 autocast, channels_last)"
    return f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads (fp32, channels_last)"


def table(rows: List[dict]) -> List[str]:
    lines = [
        "| mode | scenario | model | img/s | ms | min-max ms | x resnet50 | peak MB | saved MB |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        peak = f"{r['peak_mem_mb']:.0f}" if r["peak_mem_mb"] is not None else "-"
        saved = f"{r['saved_mb']:.1f}" if r.get("saved_mb") is not None else "-"
        lines.append(
            f"| {r['mode']} | {r['scenario']} | {r['model']} | {r['img_per_s']:.1f} | {r['latency_ms']:.2f} | "
            f"{r['spread_ms'][0]:.2f}-{r['spread_ms'][1]:.2f} | {r['ratio_time']:.3f} | {peak} | {saved} |"
        )
    return lines


def write_markdown(out: str, data: dict) -> None:
    lines = [
        "# GPU suite results",
        "",
        f"- command: `{data['command']}`",
        f"- date: {data['date']}; device: {data['device']}",
        f"- versions: {data['versions']}",
        f"- {data['repeats']} interleaved repeats x {data['iters']} calls; ratios to resnet50 of the same run "
        "(reparam: to the folded resnet50)",
        "",
    ]
    for name, part in data["parts"].items():
        lines += [f"## {name} ({part['seconds']:.0f} s)", ""]
        lines += part["markdown"].splitlines() if name == "profile" else table(part["rows"])
        lines += [""] + [f"- warning: {w}" for w in part.get("warnings", [])] + [""]
    with open(os.path.join(out, "RESULTS.md"), "w") as f:
        f.write("\n".join(lines))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True, help="folder for gpu_suite.json and RESULTS.md (resumed if present)")
    p.add_argument("--smoke", action="store_true", help="CPU, tiny sizes, one repeat, compile backend 'eager'")
    p.add_argument("--device", default=None, help="default: cuda (cpu with --smoke)")
    p.add_argument("--repeats", type=int, default=None, help="interleaved repeats (default 5; smoke 1)")
    p.add_argument("--iters", type=int, default=None, help="calls per timing (default 20; smoke 1)")
    a = p.parse_args()
    device = torch.device(a.device or ("cpu" if a.smoke else "cuda"))
    if device.type == "cuda" and not torch.cuda.is_available():
        p.error("no CUDA device here; use --smoke (CPU) or --device cpu")
    repeats, iters = a.repeats or (1 if a.smoke else 5), a.iters or (1 if a.smoke else 20)
    os.makedirs(a.out, exist_ok=True)
    path = os.path.join(a.out, "gpu_suite.json")
    data = json.load(open(path)) if os.path.isfile(path) else {"parts": {}}
    data.update(
        command=" ".join(["python", *sys.argv]),
        date=datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        device=device_name(device),
        versions=f"torch {torch.__version__}, timm {timm.__version__}, salient-timm {salient_timm.__version__}, "
        f"Python {platform.python_version()}",
        repeats=repeats,
        iters=iters,
    )
    bandwidth = copy_bandwidth(device)
    backend = "eager" if a.smoke else "inductor"
    for name, part in parts(a.smoke).items():
        if name in data["parts"]:
            print(f"{name}: done before, kept")
            continue
        start = time.perf_counter()
        if name == "profile":
            size = (3, part["size"], part["size"])
            spec = AnalysisTarget("resnet50", "salient", input_size=size, batch=part["batch"])
            options = ProfileOptions(device=str(device), repeats=repeats, warmup=1)
            measured = profile_models(spec, options)
            result = {"markdown": render(profile_report(spec, options, measured), "markdown")}
            result["warnings"] = trust_warnings(*measured)
        else:
            rows = run_matrix(
                MODELS,
                part["scenarios"],
                part["modes"],
                ["channels_last"],
                device,
                repeats,
                iters,
                True,
                backend,
                cpu_memory=False,
                bandwidth=bandwidth,
            )
            result = {"rows": rows}
        result["seconds"] = time.perf_counter() - start
        data["parts"][name] = result
        with open(path + ".tmp", "w") as f:
            json.dump(data, f, indent=1)
        os.replace(path + ".tmp", path)
        write_markdown(a.out, data)
        print(f"{name}: {result['seconds']:.0f} s")
    write_markdown(a.out, data)
    print(f"written {path} and {os.path.join(a.out, 'RESULTS.md')}")


if __name__ == "__main__":
    main()
