"""Before and after a change, whole models: ``block_overhead.py`` run on two commits in alternating processes.

Two versions of salient_timm cannot share one process (both register the same timm names), so each round runs this
tree's ``block_overhead.py`` once per commit, one process after the other, with ``PYTHONPATH`` pointing at a git
worktree of that commit; the ratio that compares them (a gated model's time over resnet50's in training, over the
fx-folded resnet50's in inference) is taken inside each process, whose models run interleaved. Resumable: a
finished process's JSON is kept and never run again.

    python benchmarks/commit_ab.py --before ae29e55 --rounds 3 --out benchmarks/ab   # then the table:
    python benchmarks/commit_ab.py --before ae29e55 --rounds 3 --out benchmarks/ab --table-only

Table: per scenario and model, each round's ratio for the before commit and for this tree, and their medians.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Tuple

ROOT = Path(__file__).resolve().parent.parent
PARTS = {  # part: block_overhead arguments (models: resnet50 first, the ratio base)
    "train": ["--scenarios", "train b64 32px,train b16 224px", "--repeats", "5"],
    "infer": ["--modes", "reparam", "--scenarios", "infer b1 224px,infer b8 224px", "--repeats", "7"],
}
MODELS = "resnet50,salient_resnet50,ssa_resnet50"
BASE = {"train": "resnet50", "infer": "resnet50 (fx fuse)"}  # what each part's ratios divide by
CODES = ("before", "after")


def ratios(result: dict, part: str) -> Dict[Tuple[str, str], float]:
    """``{(scenario, model): time / base time}`` from one ``block_overhead.py --json`` file's contents."""
    out: Dict[Tuple[str, str], float] = {}
    rows = result["results"]
    for scenario in dict.fromkeys(r["scenario"] for r in rows):
        by_model = {r["model"]: r for r in rows if r["scenario"] == scenario}
        base = by_model[BASE[part]]["latency_ms"]
        for model in MODELS.split(",")[1:]:
            out[(scenario, model)] = by_model[model]["latency_ms"] / base
    return out


def table(runs: Dict[Tuple[str, str], List[dict]]) -> List[str]:
    """Markdown rows from ``{(code, part): [round results]}``: each round's ratio and the median, per code."""
    lines = [
        "| scenario | model | x base, before (each round) | median | x base, after (each round) | median |",
        "|---|---|---|---|---|---|",
    ]
    for part in PARTS:
        per_code = {code: [ratios(r, part) for r in runs.get((code, part), [])] for code in CODES}
        if not all(per_code.values()):
            continue
        for key in per_code["after"][0]:
            cells = []
            for code in CODES:
                values = [r[key] for r in per_code[code]]
                cells += [", ".join(f"{v:.3f}" for v in values), f"**{statistics.median(values):.3f}**"]
            lines.append(f"| {key[0]} | {key[1]} | " + " | ".join(cells) + " |")
    return lines


def _worktree(rev: str, out: Path) -> Path:
    path = out / f"tree-{rev}"
    if not path.exists():
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(path), rev], check=True)
    link = path / "salient_analysis"  # the analysis package's import name (pyproject maps it to analysis/)
    if not link.exists() and (path / "analysis").is_dir():
        link.symlink_to("analysis")
    return path


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--before", required=True, help="the commit (or any git revision) to compare this tree with")
    p.add_argument("--rounds", type=int, default=3, help="processes per commit and part, alternating")
    p.add_argument("--out", default="benchmarks/ab", help="folder for the worktree and each process's JSON")
    p.add_argument("--parts", default="train,infer", help="comma-separated: " + ", ".join(PARTS))
    p.add_argument("--table-only", action="store_true", help="print the table from the JSON files already there")
    a = p.parse_args()
    parts = a.parts.split(",")
    if set(parts) - set(PARTS):
        p.error(f"unknown part in {a.parts!r}; valid: {', '.join(PARTS)}")
    out = Path(a.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    trees = {"after": ROOT} if a.table_only else {"before": _worktree(a.before, out), "after": ROOT}
    runs: Dict[Tuple[str, str], List[dict]] = {}
    for round_ in range(1, a.rounds + 1):
        for code in CODES:
            for part in parts:
                path = out / f"{code}_{part}_r{round_}.json"
                if not path.exists() and not a.table_only:
                    env = dict(os.environ, PYTHONPATH=str(trees[code]))
                    command = [sys.executable, "-W", "ignore", str(ROOT / "benchmarks" / "block_overhead.py")]
                    command += PARTS[part] + ["--models", MODELS, "--no-cpu-memory", "--json", f"{path}.tmp"]
                    print(f"round {round_}: {code} {part}", flush=True)
                    subprocess.run(command, check=True, env=env, cwd=out)
                    os.replace(f"{path}.tmp", path)
                if path.exists():
                    runs.setdefault((code, part), []).append(json.loads(path.read_text()))
    print("\n".join(table(runs)))


if __name__ == "__main__":
    main()
