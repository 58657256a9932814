"""A sampled mutation check of the core modules with cosmic-ray (issue 35 item 2); writes results/mutation.md.

    pip install -e ".[test,dev]"        # cosmic-ray is in the dev extra
    python scripts/mutation_sample.py [--per-module 12] [--seed 0] [--modules counting,folding]

Line coverage says a line ran; a mutant says whether a wrong line would fail a test. For each core module below,
cosmic-ray lists every mutant its operators make (a flipped comparison, a changed number, a removed
``not``...), this script keeps a seeded random sample of ``--per-module`` of them, and each sampled mutant runs
the module's own test files (``-x -m "not slow"``): a failing test kills it, a passing suite lets it survive.

| module | the behaviour its tests pin |
|---|---|
| `salient_timm/layers/salient.py` | gate outputs, impl choice, init, reset |
| `salient_timm/layers/_fused_gate.py` | the fused gate exact against the literal ops, with gradients |
| `salient_timm/deploy/fold.py` | the folded deploy form equal to the trained model, refusals named |
| `salient_timm/surgery/inject.py` | the retrofit plan, identity start, refusals |
| `analysis/counting.py` | MAC and elementwise counts, fvcore's convention |
| `analysis/localization.py` | pointing game and energy, chance and ceiling |
| `salient_timm/data/datasets.py` | canvases, boxes, splits, subsets |

Mutation happens in files on disk, so it never touches this checkout: the committed tree (``HEAD``) is checked
out as a detached git worktree under ``--state-dir`` and the tests run there (``PYTHONPATH`` puts it first).
Uncommitted edits are not tested. Resumable: each module's cosmic-ray session (SQLite) is kept in
``--state-dir`` per commit, and a second call runs only what is still pending. The table is regenerated whole;
the prose of results/mutation.md after the marker line (the survivors' reasons) is kept.
"""

import argparse
import datetime
import os
import platform
import random
import subprocess
import sys
from importlib.metadata import version
from typing import Dict, List, Tuple

from kept_prose import write_keeping_prose  # scripts/kept_prose.py

# module -> the test files that pin it (run for each of its mutants)
SURVIVORS = "tests/test_mutation_survivors.py"  # what earlier samples found unpinned, each a user-visible outcome
MODULES: Dict[str, Tuple[str, Tuple[str, ...]]] = {
    "blocks": (
        "salient_timm/layers/salient.py",
        (
            "tests/test_blocks.py",
            "tests/test_contract.py",
            "tests/test_user_outcomes.py",
            "tests/test_fused.py::test_fused_impl_uses_its_plain_ops_where_a_custom_function_cannot_go",  # TorchScript
            SURVIVORS,
        ),
    ),
    "fused": ("salient_timm/layers/_fused_gate.py", ("tests/test_fused.py", SURVIVORS)),
    "folding": ("salient_timm/deploy/fold.py", ("tests/test_reparam.py", "tests/test_user_outcomes.py", SURVIVORS)),
    "surgery": (
        "salient_timm/surgery/inject.py",
        ("tests/test_surgery.py", "tests/test_families.py", "tests/test_user_outcomes.py", SURVIVORS),
    ),
    "counting": ("analysis/counting.py", ("tests/test_counter.py", "tests/test_fvcore_convention.py", SURVIVORS)),
    "localization": ("analysis/localization.py", ("tests/test_localization.py", SURVIVORS)),
    "data": (
        "salient_timm/data/datasets.py",
        (
            "tests/test_cluttered.py",
            "tests/test_user_outcomes.py",
            "tests/test_train.py::test_cifar_folders_with_the_seed_recipe",
            SURVIVORS,
        ),
    ),
}
MARKER = "<!-- the table above is written by scripts/mutation_sample.py; what follows is kept -->"


def _git(*args: str) -> str:
    return subprocess.run(["git", *args], check=True, capture_output=True, text=True).stdout.strip()


def _tree(state_dir: str, commit: str) -> str:
    """A detached worktree of ``commit``; ``salient_analysis`` is the installed name of ``analysis/``."""
    tree = os.path.abspath(os.path.join(state_dir, f"tree-{commit[:12]}"))
    if not os.path.isdir(tree):
        _git("worktree", "add", "--detach", tree, commit)
    link = os.path.join(tree, "salient_analysis")
    if not os.path.exists(link):
        os.symlink("analysis", link)
    return tree


def _config(path: str, module: str, tests: Tuple[str, ...], timeout: float) -> None:
    command = f'{sys.executable} -m pytest -x -q -p no:cacheprovider -m "not slow" ' + " ".join(tests)
    with open(path, "w") as f:
        f.write(
            f'[cosmic-ray]\nmodule-path = "{module}"\ntimeout = {timeout}\nexcluded-modules = []\n'
            f"test-command = '{command}'\n\n[cosmic-ray.distributor]\nname = \"local\"\n"
        )


def _session(name: str, module: str, tests: Tuple[str, ...], a: argparse.Namespace, tree: str, env: dict) -> str:
    """Init (once) and sample a module's session; run what is pending; return the session file."""
    from cosmic_ray.work_db import WorkDB, use_db
    from cosmic_ray.work_item import WorkerOutcome, WorkResult

    state = os.path.abspath(os.path.join(a.state_dir, os.path.basename(tree)))
    os.makedirs(state, exist_ok=True)
    config, db = os.path.join(state, f"{name}.toml"), os.path.join(state, f"{name}.sqlite")
    if not os.path.exists(db):
        _config(config, module, tests, a.timeout)
        subprocess.run(["cosmic-ray", "init", config, db + ".tmp"], check=True, cwd=tree, env=env)
        with use_db(db + ".tmp", WorkDB.Mode.open) as work:
            # sampled by what each mutant is (operator, place), not by cosmic-ray's random job ids: the same seed
            # draws the same mutants of an unchanged module
            items = {item.job_id: item.mutations[0] for item in work.pending_work_items}
            jobs = sorted(items, key=lambda j: (items[j].operator_name, items[j].occurrence, items[j].start_pos))
            keep = set(random.Random(f"{a.seed}:{name}").sample(jobs, min(a.per_module, len(jobs))))
            skipped = WorkResult(worker_outcome=WorkerOutcome.SKIPPED, output="not in the sample")
            for job in jobs:
                if job not in keep:
                    work.set_result(job, skipped)
        os.replace(db + ".tmp", db)
    print(f"== {name}: {module} against {' '.join(tests)}", flush=True)
    subprocess.run(["cosmic-ray", "exec", config, db], check=True, cwd=tree, env=env)
    return db


def _summary(name: str, module: str, db: str) -> Tuple[List[str], List[str]]:
    from cosmic_ray.work_db import WorkDB, use_db
    from cosmic_ray.work_item import TestOutcome, WorkerOutcome

    with use_db(db, WorkDB.Mode.open) as work:
        total = work.num_work_items
        done = [(i, r) for i, r in work.completed_work_items if r.worker_outcome != WorkerOutcome.SKIPPED]
        pending = sum(1 for _ in work.pending_work_items)
    killed = sum(r.test_outcome == TestOutcome.KILLED for _, r in done)
    survived = [(i, r) for i, r in done if r.test_outcome == TestOutcome.SURVIVED]
    incompetent = sum(r.test_outcome == TestOutcome.INCOMPETENT for _, r in done)
    judged = killed + len(survived)
    score = f"{100 * killed / judged:.0f} %" if judged else "-"
    cells = [name, f"`{module}`", total, len(done) + pending, killed, len(survived), incompetent, pending, score]
    row = "| " + " | ".join(str(c) for c in cells) + " |"
    lines = []
    for item, result in survived:
        m = item.mutations[0]
        diff = "\n".join(
            line for line in (result.diff or "").splitlines() if line[:1] in "+-" and line[:3] not in ("+++", "---")
        )
        lines.append(f"- {name} `{item.job_id[:8]}` {m.operator_name} at line {m.start_pos[0]}: `{diff.strip()}`")
    return [row], lines


def main() -> None:
    p = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    p.add_argument("--per-module", type=int, default=12, help="mutants sampled per module (default 12)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--modules", default=",".join(MODULES), help="comma-separated: " + ", ".join(MODULES))
    p.add_argument("--timeout", type=float, default=900.0, help="seconds a mutant's tests may take (a hang guard)")
    p.add_argument("--state-dir", default=".mutation")
    p.add_argument("--out", default="results/mutation.md")
    a = p.parse_args()
    names = [n.strip() for n in a.modules.split(",") if n.strip()]
    unknown = [n for n in names if n not in MODULES]
    if unknown:
        p.error(f"unknown module {unknown[0]!r}; choose from {', '.join(MODULES)}")
    commit = _git("rev-parse", "HEAD")
    tree = _tree(a.state_dir, commit)
    env = dict(os.environ, PYTHONPATH=tree + os.pathsep + os.environ.get("PYTHONPATH", ""))
    rows: List[str] = []
    survivors: List[str] = []
    for name in names:
        module, tests = MODULES[name]
        db = _session(name, module, tests, a, tree, env)
        row, lines = _summary(name, module, db)
        rows += row
        survivors += lines
    table = [
        "# Mutation check of the core modules (sampled)",
        "",
        f"command: `python {' '.join(sys.argv)}`  ",
        f"date: {datetime.date.today().isoformat()}; commit {commit[:12]}; device: CPU ({platform.machine()}, "
        f"{os.cpu_count()} cores), load average {os.getloadavg()[0]:.1f}; python {platform.python_version()}; "
        f"cosmic-ray {version('cosmic-ray')}; seed {a.seed}, {a.per_module} a module",
        "",
        "Score = killed / (killed + survived); incompetent mutants (code that no longer imports or runs) are "
        "left out of it.",
        "",
        "| module | file | mutants | sampled | killed | survived | incompetent | pending | score |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
        *rows,
        "",
        "Survivors (operator, line, the changed line):",
        "",
        *(survivors or ["- none"]),
        "",
        MARKER,
    ]
    write_keeping_prose(a.out, table, MARKER)
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
