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
