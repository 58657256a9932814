"""The benchmark scripts run: ``benchmarks/gpu_suite.py --smoke`` (CPU, tiny sizes), so the GPU suite cannot rot."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MODELS = {"resnet50", "seresnet50", "salient_resnet50", "ssa_resnet50"}


@pytest.mark.slow  # an end-to-end benchmark run, resumed
def test_the_gpu_suite_smoke_run_writes_every_part_and_resumes(tmp_path):
    command = [sys.executable, str(ROOT / "benchmarks" / "gpu_suite.py"), "--smoke", "--out", str(tmp_path)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=1500, cwd=ROOT / "benchmarks")
    assert result.returncode == 0, result.stderr[-3000:]
    data = json.loads((tmp_path / "gpu_suite.json").read_text())
    assert set(data["parts"]) == {"train", "infer", "reparam", "profile"}
    for part in ("train", "infer"):
        rows = data["parts"][part]["rows"]
        assert {(r["mode"], r["model"]) for r in rows} == {(m, n) for m in ("eager", "compile") for n in MODELS}
        assert all(r["latency_ms"] > 0 for r in rows)
    folded = {r["model"] for r in data["parts"]["reparam"]["rows"]}
    assert folded == MODELS | {"resnet50 (fx fuse)", "resnet50 (unfolded)"}
    assert "resnet50+salient" in data["parts"]["profile"]["markdown"]
    results = (tmp_path / "RESULTS.md").read_text()
    assert "- command: `python" in results and "- versions: torch" in results and "## reparam" in results
    again = subprocess.run(command, capture_output=True, text=True, timeout=1500, cwd=ROOT / "benchmarks")
    assert again.returncode == 0 and again.stdout.count("done before, kept") == 4


def _load_script(name: str):
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_commit_comparison_divides_by_each_parts_base_and_takes_the_median_of_rounds():
    """Training ratios over resnet50, inference ratios over the fx-folded resnet50, each inside its own process;
    the median over rounds, per commit (benchmarks/commit_ab.py)."""
    ab = _load_script("commit_ab")

    def result(scenario, times):
        return {"results": [{"scenario": scenario, "model": m, "latency_ms": t} for m, t in times.items()]}

    runs = {}
    for code, salient in (("before", (120.0, 100.0, 110.0)), ("after", (99.0, 101.0, 103.0))):
        runs[(code, "train")] = [
            result("train b64 32px", {"resnet50": 100.0, "salient_resnet50": s, "ssa_resnet50": 200.0}) for s in salient
        ]
        runs[(code, "infer")] = [
            result(
                "infer b1 224px",
                {"resnet50": 1.0, "resnet50 (fx fuse)": 50.0, "salient_resnet50": s / 2, "ssa_resnet50": 50.0},
            )
            for s in salient
        ]
    rows = {tuple(c.strip() for c in line.split("|")[1:3]): line for line in ab.table(runs)[2:]}
    assert rows[("train b64 32px", "salient_resnet50")].endswith(
        "| 1.200, 1.000, 1.100 | **1.100** | 0.990, 1.010, 1.030 | **1.010** |"
    )
    assert "**2.000**" in rows[("train b64 32px", "ssa_resnet50")]
    assert rows[("infer b1 224px", "salient_resnet50")].endswith("| **1.100** | 0.990, 1.010, 1.030 | **1.010** |")
    assert rows[("infer b1 224px", "ssa_resnet50")].endswith("| **1.000** |")
