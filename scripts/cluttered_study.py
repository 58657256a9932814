"""Does the Salient gate do its job? Version 2 of the evidence study (issue 30), run as results/evidence_protocol.md
fixes it: schedules chosen on a held-out validation split, 7 seeds for plain vs +salient, a matched retrofit
control, a per-stage ablation, and localization read against chance, ceiling, baselines and a gate-free control.

    python scripts/cluttered_study.py                       # the CPU configuration (2 cores, about 4 to 5 hours)
    python scripts/cluttered_study.py --device cuda --data-dir /path/to/fashion-mnist   # the GPU configuration

Resumable: every run is a salient-train run folder under --runs-dir (a killed run continues from its last epoch, a
finished one is read back). What the tables need of a finished run (its history, step-0 accuracy, localization rows)
is also kept as a small record under --records-dir (default <results-dir>/cluttered_runs, committed with the
tables), so a finished run is never trained again even when its run folder is gone (a machine lost between
sittings), and the tables can be rewritten from the records alone (``--tables-only``: no training, each arm up to
its first seed without a record). Parts run in this order: the pilot (schedule choice), scratch, retrofit, each seed
by seed (every arm of seed 0, then seed 1, ...); ``--parts`` selects some, ``--scratch-arms`` some arms of the
scratch part, and a part runs the pilot of its own setting first (scratch: the from-scratch lengths, unless
``--scratch-epochs`` gives the length an earlier pilot chose; retrofit: the fine-tune lengths).

| part | arms (seeds) |
|---|---|
| pilot | plain from scratch at each candidate length; base + plain fine-tune at each candidate length (seed 100) |
| scratch | plain, +salient (7); +salient stages 1-2, +salient stage 1 (5) |
| retrofit | base on centred items; plain fine-tune, +salient retrofit, +constant retrofit (the matched control) (5) |

Accuracy: final-epoch test top-1; paired differences (same seed) with 95 % t intervals and the minimum detectable
effect at 80 % power. Localization: ``salient_analysis.localization`` at each stage's map size, the gate against
the plain network's own features of the same seed (the gate-free control). Each part writes its own tables:
results/cluttered.md (+ cluttered_curves.png) for scratch, results/cluttered_retrofit.md
(+ cluttered_retrofit_curves.png) for retrofit; a part that did not run leaves its file as it is.
"""

import argparse
import datetime
import json
import os
import platform
import statistics
import sys
from typing import Any, Dict, List, Optional, Sequence, Tuple

import timm
import torch

import salient_timm
from salient_analysis.localization import baseline_maps, feature_maps, reference_rows, score_row
from salient_analysis.maps import boxed_test_images, localization, stage_ends
from salient_timm import ModelSpec
from salient_timm.train.cli import parse_args, run

# per device: the size of the study (results/evidence_protocol.md); CUDA: full width, every image (not run yet)
CONFIGS: Dict[str, Dict[str, Any]] = {
    "cpu": dict(
        channels="16,32,64,128",
        stem_width=16,
        train_subset=12000,
        test_subset=5000,
        holdout=0.1,
        batch_size=64,
        lr=0.05,
        finetune_lr=0.01,
        pretrain_epochs=4,
        scratch_lengths="10,15,20",
        finetune_lengths="5,10",
        main_seeds=7,
        other_seeds=5,
        pilot_seed=100,
    ),
    "cuda": dict(
        channels="64,128,256,512",
        stem_width=64,
        train_subset=None,
        test_subset=None,
        holdout=0.1,
        batch_size=256,
        lr=0.2,
        finetune_lr=0.04,
        pretrain_epochs=6,
        scratch_lengths="15,20,30",
        finetune_lengths="6,12",
        main_seeds=10,
        other_seeds=7,
        pilot_seed=100,
    ),
}
PARTS = ("pilot", "scratch", "retrofit")
TIE = 0.3  # a longer schedule must beat a shorter one by more than this many validation points
# scratch arms: (label, attention, stages, seeds key)
SCRATCH = (
    ("plain", "none", None, "main_seeds"),
    ("+salient", "salient", None, "main_seeds"),
    ("+salient stages 1-2", "salient", "1,2", "other_seeds"),
    ("+salient stage 1", "salient", "1", "other_seeds"),
)
RETROFIT = (("plain fine-tune", "none"), ("+salient retrofit", "salient"), ("+constant retrofit", "constant"))


def _model_args(c: Dict[str, Any]) -> List[str]:
    return ["--model", "resnet18", "--model-kwargs", f"channels={c['channels']}", "--model-kwargs",
            f"stem_width={c['stem_width']}"]  # fmt: skip


def _data_args(c: Dict[str, Any], a: argparse.Namespace) -> List[str]:
    out = ["-b", str(c["batch_size"]), "--holdout", str(c["holdout"])]
    for split in ("train", "test"):
        if c[f"{split}_subset"]:
            out += [f"--{split}-subset", str(c[f"{split}_subset"])]
    return out + (["--data-dir", a.data_dir] if a.data_dir else [])


def _record_path(run_dir: str, a: argparse.Namespace) -> str:
    return os.path.join(a.records_dir, os.path.relpath(run_dir, a.runs_dir) + ".json")


def _record(run_dir: str, a: argparse.Namespace) -> Dict[str, Any]:
    path = _record_path(run_dir, a)
    if not os.path.exists(path):
        return {}
    with open(path) as f:
        return json.load(f)


def _keep(run_dir: str, a: argparse.Namespace, record: Dict[str, Any], **fields: Any) -> None:
    """Write the run's record, ``record`` (as just read by ``_record``) with ``fields`` added (the part of a finished
    run the tables read)."""
    path = _record_path(run_dir, a)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    _write_json(path, {**record, **fields})


def _run(run_dir: str, argv: List[str], a: argparse.Namespace, weights: bool = False) -> Optional[Dict[str, Any]]:
    """One salient-train run: fresh, resumed after a kill, or read back when finished (from its folder, else from
    its record; ``weights``: the caller needs its last.pth, so a run known only by its record is trained again, the
    same seed giving the same run); never extended. With ``--tables-only``: None for a run without a finished
    record, which is not trained."""
    wanted = int(argv[argv.index("--epochs") + 1])
    record = _record(run_dir, a)
    if a.tables_only and "history" not in record:
        return None
    known = not os.path.exists(os.path.join(run_dir, "last.pth")) and not weights
    if "history" in record and (a.tables_only or known):
        if len(record["history"]) != wanted:
            raise SystemExit(f"{run_dir} was made with {len(record['history'])} epochs, the protocol now asks {wanted}")
        return {"history": record["history"], "step0": record.get("step0"), "dir": run_dir}
    common = ["--no-progress"] + (["--device", a.device] if a.device else [])
    if os.path.exists(os.path.join(run_dir, "last.pth")):
        with open(os.path.join(run_dir, "args.json")) as f:
            planned = json.load(f)["epochs"]
        if planned != wanted:
            raise SystemExit(f"{run_dir} was made with {planned} epochs, the protocol now asks {wanted}: not extended")
        run(parse_args(["--resume", run_dir, *common]))
    else:
        run(parse_args([*argv, "--out", run_dir, *common]))
    with open(os.path.join(run_dir, "metrics.json")) as f:
        history = json.load(f)
    step0 = None
    if os.path.exists(os.path.join(run_dir, "initial_eval.json")):
        with open(os.path.join(run_dir, "initial_eval.json")) as f:
            step0 = json.load(f)["test_top1"]
    _keep(run_dir, a, record, history=history, step0=step0)
    return {"history": history, "step0": step0, "dir": run_dir}


def _write_json(path: str, value: Any) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(value, f, indent=1)
    os.replace(tmp, path)


def _cached(run_dir: str, name: str, a: argparse.Namespace, compute) -> Any:
    """``compute()`` once per finished run, kept in its record under ``name``."""
    record = _record(run_dir, a)
    if name in record:
        return record[name]
    value = compute()
    _keep(run_dir, a, record, **{name: value})
    return value


def _test_images(config: dict, a: argparse.Namespace, c: Dict[str, Any]):
    return boxed_test_images("cluttered-fashion-mnist", config, a.data_dir, test_subset=c["test_subset"])


def _need(weights: str) -> None:
    if not os.path.exists(weights):
        raise SystemExit(f"{weights} is gone and its record has no localization rows: delete the record to retrain")


def _localize(run_dir: str, a: argparse.Namespace, c: Dict[str, Any], step0: bool = False) -> List[dict]:
    """Rows of ``salient_analysis.maps.localization`` for a gated run (``step0``: a retrofit before its first step,
    rebuilt from its own options and the base's weights); kept in the run's record."""
    weights = os.path.join(run_dir, "last.pth")

    def compute() -> List[dict]:
        _need(weights)
        if step0:
            with open(os.path.join(run_dir, "args.json")) as f:
                options = json.load(f)
            torch.manual_seed(options["seed"])
            model = ModelSpec.from_run_options(options, options["num_classes"], options["in_chans"]).build().eval()
            size = options["img_size"]
            config = dict(input_size=(1, size, size), mean=options["data_mean"], std=options["data_std"])
        else:
            _, model, config = ModelSpec.from_checkpoint(weights)
        x, labels, boxes, _ = _test_images(config, a, c)
        return localization(model, x, boxes, labels)[0]

    return _cached(run_dir, "localization_step0" if step0 else "localization_last", a, compute)


def _control(run_dir: str, a: argparse.Namespace, c: Dict[str, Any]) -> List[dict]:
    """The gate-free control of a plain run: its stage-end features, with chance, ceiling and baselines."""
    weights = os.path.join(run_dir, "last.pth")

    def compute() -> List[dict]:
        _need(weights)
        _, model, config = ModelSpec.from_checkpoint(weights)
        x, _, boxes, _ = _test_images(config, a, c)
        size = tuple(x.shape[-2:])
        rows = []
        for block, maps in feature_maps(model, x, stage_ends(model)).items():
            rows.append({"kind": "features", "block": block, **_scores(maps, boxes, size)})
            hw = tuple(maps.shape[-2:])
            rows += [{"kind": "reference", "block": r.pop("name"), **r} for r in reference_rows(boxes, size, hw)]
            rows += [
                {"kind": "baseline", "block": k, **_scores(m, boxes, size)} for k, m in baseline_maps(x, hw).items()
            ]
        return rows

    return _cached(run_dir, "control", a, compute)


def _scores(maps: torch.Tensor, boxes: torch.Tensor, size: Any) -> dict:
    row = score_row("", maps, boxes, size)
    row.pop("name")
    return row


# ---- statistics ---------------------------------------------------------------------------------------------------


def paired_interval(arm: Sequence[float], plain: Sequence[float]) -> Tuple[float, float, float]:
    """Mean paired difference (arm - plain, same seed) and its 95 % t interval over seeds."""
    from scipy import stats

    d = [x - y for x, y in zip(arm, plain)]
    mean = statistics.mean(d)
    if len(d) < 2:
        return mean, float("nan"), float("nan")
    half = stats.t.ppf(0.975, len(d) - 1) * statistics.stdev(d) / len(d) ** 0.5
    return mean, mean - half, mean + half


def detectable_effect(arm: Sequence[float], plain: Sequence[float]) -> float:
    """Minimum detectable paired effect at 80 % power, two-sided 5 %: (t(.975, n-1) + t(.8, n-1)) sd / sqrt(n)."""
    from scipy import stats

    d = [x - y for x, y in zip(arm, plain)]
    if len(d) < 2:
        return float("nan")
    n = len(d)
    return float((stats.t.ppf(0.975, n - 1) + stats.t.ppf(0.8, n - 1)) * statistics.stdev(d) / n**0.5)


def _ms(values: Sequence[float]) -> str:
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.2f} ± {sd:.2f}"


def _diff(arm: Sequence[float], plain: Sequence[float], digits: int = 2) -> str:
    n = min(len(arm), len(plain))
    mean, lo, hi = paired_interval(arm[:n], plain[:n])
    return f"{mean:+.{digits}f} [{lo:+.{digits}f}, {hi:+.{digits}f}]"


def _mde(arm: Sequence[float], plain: Sequence[float]) -> str:
    n = min(len(arm), len(plain))
    return f"{detectable_effect(arm[:n], plain[:n]):.2f}"


def _last(r: Dict[str, Any], key: str = "test_top1") -> float:
    return r["history"][-1][key]


# ---- schedule choice ----------------------------------------------------------------------------------------------


def choose_length(val_by_length: Dict[int, float], tie: float = TIE) -> int:
    """The protocol's rule: the highest final validation top-1; a longer schedule wins only by more than ``tie``."""
    best = min(val_by_length)
    for length in sorted(val_by_length):
        if val_by_length[length] > val_by_length[best] + tie:
            best = length
    return best


def _lengths(text: str) -> List[int]:
    return [int(v) for v in str(text).split(",") if v]


# ---- the tables ---------------------------------------------------------------------------------------------------


def _header(a: argparse.Namespace, c: Dict[str, Any], minutes: float, part: str) -> List[str]:
    device = (
        torch.cuda.get_device_name()
        if (a.device or "").startswith("cuda")
        else f"CPU ({platform.machine()}, {torch.get_num_threads()} threads)"
    )
    return [
        "# Cluttered Fashion-MNIST: does the Salient gate help, and does its map point at the object? (version 2, "
        + ("from scratch)" if part == "scratch" else "retrofit)"),
        "",
        "Protocol, fixed before the first run: `results/evidence_protocol.md`.",
        "",
        f"- command: `python scripts/cluttered_study.py {' '.join(a.argv)}`".rstrip() + "",
        f"- date {datetime.date.today()}, device {device}, torch {torch.__version__}, timm {timm.__version__}, "
        f"salient-timm {salient_timm.__version__}, Python {sys.version.split()[0]}",
        "- configuration: " + ", ".join(f"{k} {v}" for k, v in c.items()),
        f"- training time of the runs in these tables (sum of epoch times, all sittings): {minutes:.1f} min",
        "",
    ]


def _pilot_table(pilot: Dict[str, Dict[int, Dict[str, Any]]], chosen: Dict[str, int]) -> List[str]:
    lines = ["## Schedules, chosen on validation (pilot seed, plain arm)", ""]
    if any(pilot.values()):
        lines += ["| setting | epochs | final validation top-1 | chosen |", "|---|---|---|---|", ""]
    fixed = []
    for setting, runs in pilot.items():
        if not runs and setting in chosen:
            fixed.append(f"{setting}: {chosen[setting]} epochs, given by `--scratch-epochs` (the pilot not run here)")
        for length, r in sorted(runs.items()):
            mark = "**yes**" if chosen.get(setting) == length else ""
            lines.insert(-1, f"| {setting} | {length} | {_last(r, 'val_top1'):.2f} | {mark} |")
    return lines + [
        f"Rule: the highest final validation top-1; a longer schedule wins only by more than {TIE}.",
        *(f"Fixed without a pilot in this run: {line}." for line in fixed),
        "",
    ]


def _accuracy_rows(arms: Dict[str, List[Dict[str, Any]]], reference: str, extra: Optional[Tuple[str, str]] = None):
    plain = [_last(r) for r in arms[reference]]
    head = f"| arm | seeds | step-0 top-1 | test top-1 (mean ± sd) | − {reference} [95 % CI] | detectable at 80 % |"
    sep = "|---|---|---|---|---|---|"
    if extra:
        head += f" {extra[0]} − {extra[1]} [95 % CI] | detectable |"
        sep += "---|---|"
    lines = [head, sep]
    for label, runs in arms.items():
        if not runs:
            continue
        acc = [_last(r) for r in runs]
        step0 = _ms([r["step0"] for r in runs]) if runs[0]["step0"] is not None else "-"
        diff = ("-", "-") if label == reference else (_diff(acc, plain), _mde(acc, plain))
        row = f"| {label} | {len(acc)} | {step0} | {_ms(acc)} | {diff[0]} | {diff[1]} |"
        if extra:
            if label == extra[0] and arms.get(extra[1]):
                other = [_last(r) for r in arms[extra[1]]]
                row += f" {_diff(acc, other)} | {_mde(acc, other)} |"
            else:
                row += " - | - |"
        lines.append(row)
    return lines


def _stage_scores(rows: List[dict], kind: str) -> Dict[str, Dict[str, float]]:
    """``{map size: {metric: score}}`` of the stage-end rows of ``kind`` (``gate``: the last gate of each map size)."""
    out: Dict[str, Dict[str, float]] = {}
    for r in rows:
        if r["kind"] == kind:
            out[r["map"]] = {"pg": r["pointing game"], "eb": r["energy in box"]}
    return out


def _named(rows: List[dict], kind: str) -> Dict[Tuple[str, str], Dict[str, float]]:
    return {
        (r["map"], r["block"]): {"pg": r["pointing game"], "eb": r["energy in box"]} for r in rows if r["kind"] == kind
    }


def _localization_table(gated: List[List[dict]], control: List[List[dict]], label: str) -> List[str]:
    """Per map size: the gate (last gated block of the stage), its own features, the plain control's features, the
    paired difference gate − control over seeds, and chance, ceiling and baselines of the same size."""
    n = min(len(gated), len(control))
    if not n:
        return []
    lines = [
        f"| map | metric | {label} gate | its own features | plain features (control) | gate − control [95 % CI] "
        "| chance (random) | ceiling | input brightness | blurred brightness | centre prior |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    gates = [_stage_scores(rows, "gate") for rows in gated[:n]]
    own = [_stage_scores(rows, "features") for rows in gated[:n]]
    ctrl = [_stage_scores(rows, "features") for rows in control[:n]]
    refs = _named(control[0], "reference")
    bases = _named(control[0], "baseline")
    for hw in sorted(gates[0], key=lambda t: -int(t.split("x")[0])):
        for metric, name in (("pg", "pointing game"), ("eb", "energy in box")):
            g = [s[hw][metric] for s in gates]
            o = [s[hw][metric] for s in own if hw in s]
            k = [s[hw][metric] for s in ctrl if hw in s]
            cells = [f"{_ms(g).replace(' ± ', '±')}", _ms(o).replace(" ± ", "±") if o else "-"]
            cells += [_ms(k).replace(" ± ", "±") if k else "-", _diff(g, k, 3) if len(k) == len(g) else "-"]
            cells += [
                f"{refs[(hw, 'chance (random maps)')][metric]:.3f}",
                f"{refs[(hw, 'ceiling (the box itself)')][metric]:.3f}",
            ]
            cells += [
                f"{bases[(hw, b)][metric]:.3f}" for b in ("input brightness", "blurred brightness", "centre prior")
            ]
            lines.append(f"| {hw} | {name} | " + " | ".join(cells) + " |")
    return lines


def _curves(parts: Dict[str, Dict[str, List[Dict[str, Any]]]], out: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = [(name, arms) for name, arms in parts.items() if any(arms.values())]
    if not shown:
        return
    fig, axes = plt.subplots(1, len(shown), figsize=(5 * len(shown), 3.8), squeeze=False)
    for ax, (name, arms) in zip(axes[0], shown):
        for label, rs in arms.items():
            if not rs:
                continue
            epochs = min(len(r["history"]) for r in rs)
            for key, style in (("val_top1", "--"), ("test_top1", "-")):
                mean = [statistics.mean(r["history"][e][key] for r in rs) for e in range(epochs)]
                ax.plot(range(1, epochs + 1), mean, style, marker="o", ms=2, label=f"{label} {key[:-5]} (n={len(rs)})")
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("epoch")
        ax.set_ylabel("top-1 (%), mean over seeds")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def _minutes(runs: List[Dict[str, Any]]) -> float:
    return sum(row["epoch_s"] for r in runs for row in r["history"]) / 60


# ---- main ---------------------------------------------------------------------------------------------------------


def main(argv: Optional[Sequence[str]] = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default=None, help="cpu or cuda (selects the configuration; default cpu)")
    p.add_argument("--data-dir", default=None, help="Fashion-MNIST idx files (default: Debian's folder)")
    p.add_argument("--runs-dir", default=None, help="default runs/evidence-<device>")
    p.add_argument("--results-dir", default="results")
    p.add_argument(
        "--records-dir", default=None, help="the finished runs' records (default <results-dir>/cluttered_runs)"
    )
    p.add_argument("--parts", default=",".join(PARTS), help="comma-separated: " + ", ".join(PARTS))
    p.add_argument(
        "--scratch-arms",
        default=",".join(_arm_name(arm) for arm in SCRATCH),
        help="comma-separated, of the scratch part: " + ", ".join(_arm_name(arm) for arm in SCRATCH),
    )
    p.add_argument(
        "--scratch-epochs",
        type=int,
        default=None,
        help="the from-scratch schedule, when a pilot of an earlier sitting chose it (one of --scratch-lengths); "
        "the scratch pilot is then not run",
    )
    p.add_argument(
        "--tables-only",
        action="store_true",
        help="write the tables from the finished runs' records; train nothing (an arm stops at its first seed "
        "without a record)",
    )
    for key, value in CONFIGS["cpu"].items():
        p.add_argument(f"--{key.replace('_', '-')}", type=type(value) if value is not None else int, default=None)
    a = p.parse_args(argv)
    a.argv = list(sys.argv[1:] if argv is None else argv)
    kind = "cuda" if (a.device or "cpu").startswith("cuda") else "cpu"
    c = {k: (getattr(a, k) if getattr(a, k) is not None else v) for k, v in CONFIGS[kind].items()}
    a.runs_dir = a.runs_dir or os.path.join("runs", f"evidence-{kind}")
    a.records_dir = a.records_dir or os.path.join(a.results_dir, "cluttered_runs")
    parts = [x for x in a.parts.split(",") if x]
    unknown = set(parts) - set(PARTS)
    if unknown:
        p.error(f"unknown part(s) {', '.join(sorted(unknown))}; valid: {', '.join(PARTS)}")
    names = [_arm_name(arm) for arm in SCRATCH]
    a.scratch_arms = [x for x in a.scratch_arms.split(",") if x]
    unknown = set(a.scratch_arms) - set(names)
    if unknown or "none" not in a.scratch_arms:
        p.error(
            f"unknown scratch arm(s) {', '.join(sorted(unknown))}; valid: {', '.join(names)}"
            if unknown
            else f"--scratch-arms needs none (plain), the arm every other pairs with; valid: {', '.join(names)}"
        )
    if a.scratch_epochs is not None and a.scratch_epochs not in _lengths(c["scratch_lengths"]):
        p.error(f"--scratch-epochs {a.scratch_epochs} is not a protocol length; valid: {c['scratch_lengths']}")
    os.makedirs(a.results_dir, exist_ok=True)
    data = _data_args(c, a)
    cluttered = ["--dataset", "cluttered-fashion-mnist"]

    def base_argv(seed: int) -> List[str]:
        return ["--seed", str(seed), *_model_args(c), *data]

    def pretrain(seed: int, weights: bool = False) -> Optional[Dict[str, Any]]:
        d = os.path.join(a.runs_dir, f"s{seed}", "pretrain-centred")
        argv = [*base_argv(seed), "--dataset", "fashion-mnist", "--canvas", "64"]
        return _run(d, [*argv, "--epochs", str(c["pretrain_epochs"]), "--lr", str(c["lr"])], a, weights)

    def finetune(seed: int, attn: str, epochs: int, root: str, name: str) -> Optional[Dict[str, Any]]:
        base = os.path.join(a.runs_dir, f"s{seed}", "pretrain-centred", "last.pth")
        d = os.path.join(root, name)
        if "history" not in _record(d, a) and not os.path.exists(base) and not a.tables_only:
            pretrain(seed, weights=True)  # its record outlived its folder: the same seed trains the same base
        argv = [*base_argv(seed), *cluttered, "--attn", attn, "--pretrained-path", base]
        return _run(d, [*argv, "--epochs", str(epochs), "--lr", str(c["finetune_lr"])], a)

    # pilot: the schedules, on validation only; each setting's pilot runs before the first part that needs it
    seed = c["pilot_seed"]
    pilot_root = os.path.join(a.runs_dir, f"pilot-s{seed}")
    pilot: Dict[str, Dict[int, Dict[str, Any]]] = {"scratch": {}, "fine-tune": {}}
    if "pilot" in parts or ("scratch" in parts and a.scratch_epochs is None):
        for length in _lengths(c["scratch_lengths"]):
            argv = [*base_argv(seed), *cluttered, "--attn", "none", "--epochs", str(length), "--lr", str(c["lr"])]
            _put(pilot["scratch"], length, _run(os.path.join(pilot_root, f"scratch-{length}"), argv, a))
    if "pilot" in parts or "retrofit" in parts:
        if not a.tables_only:
            pretrain(seed)
        for length in _lengths(c["finetune_lengths"]):
            _put(pilot["fine-tune"], length, finetune(seed, "none", length, pilot_root, f"finetune-{length}"))
    chosen = {k: choose_length({n: _last(r, "val_top1") for n, r in v.items()}) for k, v in pilot.items() if v}
    if a.scratch_epochs is not None:
        chosen["scratch"] = a.scratch_epochs
    for part, setting in (("scratch", "scratch"), ("retrofit", "fine-tune")):
        if part in parts and setting not in chosen:
            raise SystemExit(f"the {setting} pilot has no finished record: run it first (without --tables-only)")

    if "scratch" in parts:
        _write_part(a, c, "scratch", _scratch_part(a, c, base_argv, chosen["scratch"]), pilot, chosen)
    if "retrofit" in parts:
        _write_part(a, c, "retrofit", _retrofit_part(a, c, pretrain, finetune, chosen["fine-tune"]), pilot, chosen)


def _arm_name(arm: Tuple[str, str, Optional[str], str]) -> str:
    """A scratch arm's name in ``--scratch-arms`` and its run folder (``scratch-<name>``)."""
    _, attn, stages, _ = arm
    return attn + (f"-stages{stages.replace(',', '')}" if stages else "")


def _put(runs: Dict[int, Dict[str, Any]], length: int, run: Optional[Dict[str, Any]]) -> None:
    if run is not None:
        runs[length] = run


def _scratch_part(a: argparse.Namespace, c: Dict[str, Any], base_argv, epochs: int) -> Dict[str, Any]:
    """The selected from-scratch arms, seed by seed (every selected arm of seed 0, then of seed 1, ...): a sitting
    that ends early leaves every arm at the same paired seeds. Lists stay in seed order, so arms pair by seed; an
    arm stops at its first seed without a run (``--tables-only``)."""
    chosen = [arm for arm in SCRATCH if _arm_name(arm) in a.scratch_arms]
    arms: Dict[str, List[Dict[str, Any]]] = {label: [] for label, *_ in chosen}
    loc: Dict[str, List[List[dict]]] = {}
    stopped = set()
    for seed in range(max(c[arm[3]] for arm in chosen)):
        for arm in chosen:
            label, attn, stages, tier = arm
            if seed >= c[tier] or label in stopped:
                continue
            d = os.path.join(a.runs_dir, f"s{seed}", "scratch-" + _arm_name(arm))
            argv = [*base_argv(seed), "--dataset", "cluttered-fashion-mnist", "--attn", attn, "--epochs", str(epochs)]
            argv += ["--lr", str(c["lr"])] + (["--attn-stages", stages] if stages else [])
            r = _run(d, argv, a)
            if r is None:
                stopped.add(label)
                continue
            arms[label].append(r)
            loc.setdefault(label, []).append(_control(d, a, c) if attn == "none" else _localize(d, a, c))
    return {"arms": arms, "loc": loc, "runs": [r for rs in arms.values() for r in rs]}


def _retrofit_part(a: argparse.Namespace, c: Dict[str, Any], pretrain, finetune, epochs: int) -> Dict[str, Any]:
    """Per seed: the base on centred items, then each retrofit arm fine-tuned from it on cluttered canvases."""
    arms: Dict[str, List[Dict[str, Any]]] = {label: [] for label, _ in RETROFIT}
    loc: Dict[str, List[List[dict]]] = {}
    bases: List[Dict[str, Any]] = []
    stopped = set()
    for seed in range(c["other_seeds"]):
        base = pretrain(seed)
        if base is None:
            break
        bases.append(base)
        for label, attn in RETROFIT:
            root = os.path.join(a.runs_dir, f"s{seed}")
            r = None if label in stopped else finetune(seed, attn, epochs, root, f"retrofit-{attn}")
            if r is None:
                stopped.add(label)
                continue
            arms[label].append(r)
            if attn == "none":
                loc.setdefault("control", []).append(_control(r["dir"], a, c))
            elif attn == "salient":
                loc.setdefault("step 0", []).append(_localize(r["dir"], a, c, step0=True))
                loc.setdefault("after", []).append(_localize(r["dir"], a, c))
    return {"arms": arms, "loc": loc, "bases": bases, "runs": [r for rs in arms.values() for r in rs] + bases}


def _write_part(a: argparse.Namespace, c: Dict[str, Any], part: str, result: Dict[str, Any], pilot, chosen) -> None:
    """One part's tables (results/cluttered.md or cluttered_retrofit.md) and its curves, from finished runs only."""
    setting = "scratch" if part == "scratch" else "fine-tune"
    shown = {setting: pilot[setting]}
    runs = result["runs"] + list(pilot[setting].values())
    lines = _header(a, c, _minutes(runs), part) + _pilot_table(shown, chosen)
    arms, loc = result["arms"], result["loc"]
    if part == "scratch":
        lines += ["## From scratch on cluttered canvases", ""]
        lines += _accuracy_rows(arms, "plain") + [""]
        table = _localization_table(loc.get("+salient", []), loc.get("plain", []), "+salient")
        if table:
            lines += [
                "### Does the trained gate point at the object? Last gated block of each stage, test canvases",
                "",
            ]
            lines += table + [""]
        stem = "cluttered"
    else:
        base_acc = [r["history"][-1]["test_top1"] for r in result["bases"]]
        lines += ["## Retrofit: base pretrained on centred items, fine-tuned on cluttered canvases", ""]
        lines += [
            f"Base: the plain network, {c['pretrain_epochs']} epochs on the items centred on the 64 px canvas (its "
            f"own test top-1 {_ms(base_acc)}). Every arm fine-tunes it {chosen['fine-tune']} epochs at lr "
            f"{c['finetune_lr']}; +salient and +constant with the retrofit recipe (`salient_timm.retrofit_defaults`). "
            "Step 0: the model before any update, on the cluttered test canvases.",
            "",
        ]
        lines += _accuracy_rows(arms, "plain fine-tune", ("+salient retrofit", "+constant retrofit")) + [""]
        control = loc.get("control", [])
        lines += ["### Retrofitted gates at step 0", ""]
        lines += _localization_table(loc.get("step 0", []), control, "+salient (step 0)") + [""]
        lines += ["### Retrofitted gates after fine-tuning", ""]
        lines += _localization_table(loc.get("after", []), control, "+salient") + [""]
        stem = "cluttered_retrofit"
    lines += [f"![curves]({stem}_curves.png)", ""]
    with open(os.path.join(a.results_dir, f"{stem}.md"), "w") as f:
        f.write("\n".join(lines))
    title = "cluttered, from scratch" if part == "scratch" else "cluttered, retrofit"
    _curves({title: arms}, os.path.join(a.results_dir, f"{stem}_curves.png"))
    print(f"tables written to {a.results_dir}/{stem}.md")


if __name__ == "__main__":
    main()
