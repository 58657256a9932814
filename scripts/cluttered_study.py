"""Does the gate do its job? Accuracy and localization on cluttered Fashion-MNIST, against plain, SE, SSA and
CBAM, from scratch and as a retrofit, plus the seed's table on plain Fashion-MNIST (issue 18).

    python scripts/cluttered_study.py                       # the CPU configuration (2 cores)
    python scripts/cluttered_study.py --device cuda --data-dir /path/to/fashion-mnist   # the GPU configuration

Resumable: every run is a salient-train run folder under --runs-dir (a killed run continues from its last
epoch, a finished one is read back), localization and timing results are cached beside them, and the tables are
rewritten from whatever has finished. So the study may run across several sittings.

| part | data | arms | per seed |
|---|---|---|---|
| scratch | cluttered-fashion-mnist (64 px canvas, 8 clutter patches) | resnet18-style + none, se, salient, ssa, cbam | one run per arm |
| retrofit | base: fashion-mnist centred on the 64 px canvas; then cluttered | plain fine-tune; salient, se, ssa, cbam retrofits (the project's retrofit defaults) | one base, one fine-tune per arm |
| fashion | fashion-mnist at 28 px, CIFAR stem (the seed's table on the data we have) | none, se, salient, ssa | one run per arm |

Every arm of a part shares backbone, recipe, data and data order (the seed sets both), so differences to the
plain arm are paired by seed; intervals are t intervals over seeds (scipy). Accuracies are last-epoch test top-1
(the best epoch would select on the test set). Localization: ``salient_analysis.maps.localization`` on the test
canvases (pointing game, energy in box, chance = the box's share of the canvas, and the input-brightness
baseline). Step time: an interleaved training-step benchmark of each arm's model at the study's batch and size.

Writes results/cluttered.md, results/fashion.md, results/cluttered_curves.png and results/cluttered_maps.png.
"""

import argparse
import datetime
import json
import os
import platform
import statistics
import sys
import time
from typing import Any, Dict, List, Optional, Sequence, Tuple

import timm
import torch
from torch import nn

import salient_timm
from salient_analysis.maps import boxed_test_images, draw_maps, localization, stage_blocks
from salient_timm import ModelSpec
from salient_timm.train.cli import parse_args, run

# per device: the size of the study. CPU: a resnet18 narrowed to channels 16-128, training subsets, 3 seeds,
# about 150 minutes on 2 cores; CUDA: full-width resnet18, every image, 5 seeds, sized for about 8 minutes on
# one H200-class GPU (not run yet: no GPU was lent while this was written).
CONFIGS: Dict[str, Dict[str, Any]] = {
    "cpu": dict(
        seeds=3,
        channels="16,32,64,128",
        stem_width=16,
        train_subset=12000,
        test_subset=5000,
        epochs=10,
        pretrain_epochs=4,
        finetune_epochs=4,
        fashion_epochs=5,
        batch_size=64,
        lr=0.05,
        finetune_lr=0.01,
    ),
    "cuda": dict(
        seeds=5,
        channels="64,128,256,512",
        stem_width=64,
        train_subset=None,
        test_subset=None,
        epochs=15,
        pretrain_epochs=6,
        finetune_epochs=6,
        fashion_epochs=10,
        batch_size=256,
        lr=0.2,
        finetune_lr=0.04,
    ),
}
SCRATCH_ARMS = ("none", "se", "salient", "ssa", "cbam")
RETROFIT_ARMS = ("none", "salient", "se", "ssa", "cbam")  # none: the plain fine-tune
FASHION_ARMS = ("none", "se", "salient", "ssa")
SPATIAL = ("salient", "ssa", "cbam")
PARTS = ("scratch", "retrofit", "fashion")


def _model_args(c: Dict[str, Any]) -> List[str]:
    return ["--model", "resnet18", "--model-kwargs", f"channels={c['channels']}", "--model-kwargs",
            f"stem_width={c['stem_width']}"]  # fmt: skip


def _subsets(c: Dict[str, Any]) -> List[str]:
    out = []
    for split in ("train", "test"):
        if c[f"{split}_subset"]:
            out += [f"--{split}-subset", str(c[f"{split}_subset"])]
    return out


def _run(run_dir: str, argv: List[str], a: argparse.Namespace) -> Dict[str, Any]:
    """One salient-train run: fresh, resumed after a kill, or read back when finished."""
    common = ["--no-progress"] + (["--device", a.device] if a.device else [])
    if os.path.exists(os.path.join(run_dir, "last.pth")):
        with open(os.path.join(run_dir, "args.json")) as f:
            planned = json.load(f)["epochs"]
        wanted = int(argv[argv.index("--epochs") + 1])
        # a larger --epochs than the run was made with extends it (salient-train continues on the longer schedule)
        run(parse_args(["--resume", run_dir, *common, *(["--epochs", str(wanted)] if wanted > planned else [])]))
    else:
        run(parse_args([*argv, "--out", run_dir, *common]))
    with open(os.path.join(run_dir, "metrics.json")) as f:
        history = json.load(f)
    initial = os.path.join(run_dir, "initial_eval.json")
    step0 = None
    if os.path.exists(initial):
        with open(initial) as f:
            step0 = json.load(f)["test_top1"]
    with open(os.path.join(run_dir, "args.json")) as f:
        resumes = json.load(f).get("resumes") or []
    first = (resumes[0]["epochs_before"],) if resumes else None  # an extended run: its first schedule's length
    return {"history": history, "step0": step0, "dir": run_dir, "first_schedule": first}


def _data_options(a: argparse.Namespace) -> List[str]:
    return ["--data-dir", a.data_dir] if a.data_dir else []


def _localize(run_dir: str, a: argparse.Namespace, c: Dict[str, Any], step0: bool = False) -> List[dict]:
    """Localization rows of a cluttered run's model: as trained (``last.pth``) or, ``step0``, a retrofit as built
    before its first step (its own options, the base's weights). Cached in the run folder, redone for a run
    extended since."""
    cache = os.path.join(run_dir, "localization_step0.json" if step0 else "localization_last.json")
    weights = os.path.join(run_dir, "last.pth")
    fresh = os.path.exists(cache) and (step0 or os.path.getmtime(cache) >= os.path.getmtime(weights))
    if fresh:
        with open(cache) as f:
            return json.load(f)
    if step0:
        with open(os.path.join(run_dir, "args.json")) as f:
            args = argparse.Namespace(**json.load(f))
        torch.manual_seed(args.seed)
        model = ModelSpec.from_train_args(args, args.num_classes, args.in_chans).build().eval()
        config = dict(input_size=(1, args.img_size, args.img_size), mean=args.data_mean, std=args.data_std)
    else:
        _, model, config = ModelSpec.from_checkpoint(weights)
    x, labels, boxes, _ = boxed_test_images("cluttered-fashion-mnist", config, a.data_dir, test_subset=c["test_subset"])
    rows, _ = localization(model, x, boxes, labels)
    _write_json(cache, rows)
    return rows


def _write_json(path: str, value: Any) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(value, f, indent=1)
    os.replace(tmp, path)


def step_times(specs: Dict[str, ModelSpec], size: int, batch: int, device: str, repeats: int = 5) -> Dict[str, list]:
    """Seconds per training step of each model, interleaved (one round = every model once), ``repeats`` rounds
    of 3 steps each after 2 warm-up steps; channels_last as salient-train trains."""
    dev = torch.device(device)
    models = {k: s.build().to(dev, memory_format=torch.channels_last) for k, s in specs.items()}
    opts = {k: torch.optim.SGD(m.parameters(), lr=0.01, momentum=0.9) for k, m in models.items()}
    x = torch.randn(batch, 1, size, size, device=dev).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (batch,), device=dev)

    def step(k: str) -> None:
        opts[k].zero_grad(set_to_none=True)
        nn.functional.cross_entropy(models[k](x), y).backward()
        opts[k].step()

    def sync() -> None:
        if dev.type == "cuda":
            torch.cuda.synchronize()

    for k in models:
        for _ in range(2):
            step(k)
    times: Dict[str, list] = {k: [] for k in models}
    for _ in range(repeats):
        for k in models:
            sync()
            t0 = time.perf_counter()
            for _ in range(3):
                step(k)
            sync()
            times[k].append((time.perf_counter() - t0) / 3)
    return times


def _ms(values: Sequence[float]) -> str:
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.2f} ± {sd:.2f}"


def paired_interval(arm: Sequence[float], plain: Sequence[float]) -> Tuple[float, float, float]:
    """Mean paired difference (arm - plain, same seed) and its 95 % t interval over seeds."""
    from scipy import stats

    d = [x - y for x, y in zip(arm, plain)]
    mean = statistics.mean(d)
    if len(d) < 2:
        return mean, float("nan"), float("nan")
    half = stats.t.ppf(0.975, len(d) - 1) * statistics.stdev(d) / len(d) ** 0.5
    return mean, mean - half, mean + half


def _diff_cell(arm: Sequence[float], plain: Sequence[float]) -> str:
    mean, lo, hi = paired_interval(arm, plain)
    return f"{mean:+.2f} [{lo:+.2f}, {hi:+.2f}]"


def _last(r: Dict[str, Any]) -> float:
    return r["history"][-1]["test_top1"]


def _plateau(runs: List[Dict[str, Any]]) -> str:
    """The plain arm's mean gain over its last two epochs (levelled off when near 0), and for runs extended by a
    later sitting, its accuracy at the end of the first schedule against the end of the extended one."""
    gains = [r["history"][-1]["test_top1"] - r["history"][-3]["test_top1"] for r in runs if len(r["history"]) >= 3]
    text = f"{statistics.mean(gains):+.2f} points" if gains else "n/a (fewer than 3 epochs)"
    firsts = [r["first_schedule"] for r in runs if r.get("first_schedule")]
    if firsts and len(firsts) == len(runs):
        epochs = firsts[0][0]
        before = [r["history"][epochs - 1]["test_top1"] for r in runs]
        after = [_last(r) for r in runs]
        text += (
            f"; end of its first {epochs}-epoch schedule {_ms(before)}, after the extension to "
            f"{len(runs[0]['history'])} epochs {_ms(after)} (gain {statistics.mean(after) - statistics.mean(before):+.2f})"
        )
    return text


def _stage_localization(rows_by_seed: List[List[dict]]) -> Dict[str, Tuple[float, float, float, float]]:
    """Per stage-end block: mean pointing game, sd, mean energy in box, sd over seeds."""
    out = {}
    blocks = stage_blocks([r["block"] for r in rows_by_seed[0] if not r["block"].startswith("input")])
    for block in blocks:
        pg = [next(r["pointing game"] for r in rows if r["block"] == block) for rows in rows_by_seed]
        eb = [next(r["energy in box"] for r in rows if r["block"] == block) for rows in rows_by_seed]
        out[block] = (
            statistics.mean(pg),
            statistics.stdev(pg) if len(pg) > 1 else 0.0,
            statistics.mean(eb),
            statistics.stdev(eb) if len(eb) > 1 else 0.0,
        )
    return out


def _n_params(spec: ModelSpec) -> int:
    return sum(p.numel() for p in spec.build(device="meta").parameters())


def _spec(c: Dict[str, Any], attn: str, cifar_stem: bool = False) -> ModelSpec:
    return ModelSpec(
        "resnet18",
        attn=attn,
        num_classes=10,
        in_chans=1,
        cifar_stem=cifar_stem,
        timm_kwargs=dict(channels=tuple(int(v) for v in c["channels"].split(",")), stem_width=c["stem_width"]),
    )


def _header(a: argparse.Namespace, c: Dict[str, Any], title: str, wall: float) -> List[str]:
    device = (
        torch.cuda.get_device_name()
        if (a.device or "").startswith("cuda")
        else f"CPU ({platform.machine()}, {torch.get_num_threads()} threads)"
    )
    command = "python scripts/cluttered_study.py " + " ".join(a.argv)
    return [
        f"# {title}",
        "",
        f"- command: `{command.strip()}`",
        f"- date {datetime.date.today()}, device {device}, torch {torch.__version__}, timm {timm.__version__}, "
        f"salient-timm {salient_timm.__version__}, Python {sys.version.split()[0]}",
        "- configuration: " + ", ".join(f"{k} {v}" for k, v in c.items()),
        f"- training time of the runs in this table (sum of epoch times, all sittings): {wall / 60:.1f} min",
        "",
    ]


def _train_minutes(runs: List[Dict[str, Any]]) -> float:
    return sum(row["epoch_s"] for r in runs for row in r["history"])


def _accuracy_table(
    arms: Sequence[str], runs: Dict[str, List[Dict[str, Any]]], c: Dict[str, Any], cifar_stem: bool, times: Dict
) -> List[str]:
    plain = [_last(r) for r in runs["none"]]
    extended = all(r.get("first_schedule") for rs in runs.values() for r in rs)
    first = runs["none"][0]["first_schedule"][0] if extended and runs["none"] else 0
    extra = f" top-1 after {first} epochs (first schedule) | paired diff. after {first} [95 % CI] |" if first else ""
    lines = [
        "| arm | params | seeds | test top-1 (mean ± sd) | paired diff. to plain [95 % CI] | step time x plain |"
        + extra,
        "|---|---|---|---|---|---|" + ("---|---|" if first else ""),
    ]
    base_t = statistics.median(times["none"]) if times else None
    for arm in arms:
        if not runs.get(arm):
            continue
        acc = [_last(r) for r in runs[arm]]
        n = min(len(acc), len(plain))
        diff = "-" if arm == "none" else _diff_cell(acc[:n], plain[:n])
        t = times.get(arm) if times else None
        ratio = "-"
        if t and base_t:
            ratios = sorted(x / base_t for x in t)
            ratio = f"{statistics.median(ratios):.3f} ({ratios[0]:.3f}-{ratios[-1]:.3f})"
        label = "plain" if arm == "none" else f"+{arm}"
        row = f"| {label} | {_n_params(_spec(c, arm, cifar_stem)):,} | {len(acc)} | {_ms(acc)} | {diff} | {ratio} |"
        if first:
            early = [r["history"][first - 1]["test_top1"] for r in runs[arm]]
            early_plain = [r["history"][first - 1]["test_top1"] for r in runs["none"]]
            row += f" {_ms(early)} | " + ("-" if arm == "none" else _diff_cell(early[:n], early_plain[:n])) + " |"
        lines.append(row)
    return lines


def _versus(runs: Dict[str, List[Dict[str, Any]]], pairs: Sequence[Tuple[str, str]]) -> List[str]:
    """Paired differences between attention arms (same seed), e.g. salient - se."""
    cells = []
    for a, b in pairs:
        if runs.get(a) and runs.get(b):
            x, y = [_last(r) for r in runs[a]], [_last(r) for r in runs[b]]
            n = min(len(x), len(y))
            cells.append(f"+{a} - +{b}: {_diff_cell(x[:n], y[:n])}")
    return ["Paired differences between attention arms [95 % CI]: " + "; ".join(cells) + ".", ""] if cells else []


def _localization_table(arms: Sequence[str], loc: Dict[str, List[List[dict]]], chance: float) -> List[str]:
    lines = [
        "| arm | stage (last block) | map | pointing game (mean ± sd) | energy in box (mean ± sd) |",
        "|---|---|---|---|---|",
    ]
    baseline: Dict[str, Tuple[float, float]] = {}
    for arm in arms:
        if not loc.get(arm):
            continue
        maps = {r["block"]: r["map"] for r in loc[arm][0]}
        for block, (pg, pg_sd, eb, eb_sd) in _stage_localization(loc[arm]).items():
            lines.append(f"| +{arm} | {block} | {maps[block]} | {pg:.3f} ± {pg_sd:.3f} | {eb:.3f} ± {eb_sd:.3f} |")
        for r in loc[arm][0]:
            if r["block"].startswith("input"):
                baseline[r["map"]] = (r["pointing game"], r["energy in box"])
    for hw, (pg, eb) in sorted(baseline.items(), key=lambda t: -int(t[0].split("x")[0])):
        lines.append(f"| input brightness (baseline) | - | {hw} | {pg:.3f} | {eb:.3f} |")
    lines.append(f"| chance (box share of the canvas) | - | - | {chance:.3f} | {chance:.3f} |")
    return lines


def _curves(parts: Dict[str, Dict[str, List[Dict[str, Any]]]], out: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = [(name, runs) for name, runs in parts.items() if any(runs.values())]
    fig, axes = plt.subplots(1, len(shown), figsize=(5 * len(shown), 3.8), squeeze=False)
    for ax, (name, runs) in zip(axes[0], shown):
        for arm, rs in runs.items():
            if not rs:
                continue
            epochs = min(len(r["history"]) for r in rs)
            mean = [statistics.mean(r["history"][e]["test_top1"] for r in rs) for e in range(epochs)]
            xs = list(range(1, epochs + 1))
            if rs[0]["step0"] is not None:
                xs, mean = [0, *xs], [statistics.mean(r["step0"] for r in rs), *mean]
            ax.plot(xs, mean, marker="o", ms=3, label=("plain" if arm == "none" else f"+{arm}") + f" (n={len(rs)})")
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("epoch")
        ax.set_ylabel("test top-1 (%), mean over seeds")
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def _maps_figure(run_dirs: Dict[str, str], a: argparse.Namespace, c: Dict[str, Any], out: str) -> None:
    """Six test canvases with their boxes and each stage's gate, for the first seed's salient and CBAM models."""
    from PIL import Image

    pieces = []
    for arm, run_dir in run_dirs.items():
        spec, model, config = ModelSpec.from_checkpoint(os.path.join(run_dir, "last.pth"))
        x, labels, boxes, views = boxed_test_images(
            "cluttered-fashion-mnist", config, a.data_dir, test_subset=c["test_subset"]
        )
        path = out.replace(".png", f"_{arm}.png")
        names = [f"class {int(labels[i])}" for i in range(4)]
        draw_maps(model, x[:4], views[:4], names, path, title=f"{spec.label} (seed 0)", boxes=boxes[:4], dpi=70)
        pieces.append(Image.open(path).convert("RGB"))
        os.remove(path)
    width = sum(p.width for p in pieces)
    sheet = Image.new("RGB", (width, max(p.height for p in pieces)), "white")
    left = 0
    for p in pieces:
        sheet.paste(p, (left, 0))
        left += p.width
    sheet.save(out)


def main(argv: Optional[Sequence[str]] = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default=None, help="cpu or cuda (selects the configuration; default cpu)")
    p.add_argument("--data-dir", default=None, help="Fashion-MNIST idx files (default: Debian's folder)")
    p.add_argument("--runs-dir", default=None, help="default runs/cluttered-<device>")
    p.add_argument("--results-dir", default="results")
    p.add_argument("--parts", default=",".join(PARTS), help="comma-separated: " + ", ".join(PARTS))
    for key, value in CONFIGS["cpu"].items():
        p.add_argument(f"--{key.replace('_', '-')}", type=type(value) if value is not None else int, default=None)
    a = p.parse_args(argv)
    a.argv = list(sys.argv[1:] if argv is None else argv)  # stamped on the tables
    kind = "cuda" if (a.device or "cpu").startswith("cuda") else "cpu"
    c = {k: (getattr(a, k) if getattr(a, k) is not None else v) for k, v in CONFIGS[kind].items()}
    runs_dir = a.runs_dir or os.path.join("runs", f"cluttered-{kind}")
    parts = [x for x in a.parts.split(",") if x]
    unknown = set(parts) - set(PARTS)
    if unknown:
        p.error(f"unknown part(s) {', '.join(sorted(unknown))}; valid: {', '.join(PARTS)}")
    os.makedirs(a.results_dir, exist_ok=True)
    recipe = ["-b", str(c["batch_size"]), *_subsets(c), *_data_options(a)]
    cluttered = ["--dataset", "cluttered-fashion-mnist"]

    scratch: Dict[str, List[Dict[str, Any]]] = {arm: [] for arm in SCRATCH_ARMS}
    retro: Dict[str, List[Dict[str, Any]]] = {arm: [] for arm in RETROFIT_ARMS}
    fashion: Dict[str, List[Dict[str, Any]]] = {arm: [] for arm in FASHION_ARMS}
    loc_scratch: Dict[str, List[List[dict]]] = {arm: [] for arm in SPATIAL}
    loc_retro: Dict[str, List[List[dict]]] = {arm: [] for arm in SPATIAL}
    loc_retro0: Dict[str, List[List[dict]]] = {arm: [] for arm in SPATIAL}
    pretrain: List[Dict[str, Any]] = []
    for part in parts:  # each part for every seed before the next part: the first parts finish first
        for seed in range(c["seeds"]):
            root = os.path.join(runs_dir, f"s{seed}")
            base = ["--seed", str(seed), *_model_args(c), *recipe]
            if part == "scratch":
                for arm in SCRATCH_ARMS:
                    d = os.path.join(root, f"scratch-{arm}")
                    argv = [*base, *cluttered, "--attn", arm, "--epochs", str(c["epochs"]), "--lr", str(c["lr"])]
                    scratch[arm].append(_run(d, argv, a))
                    if arm in SPATIAL:
                        loc_scratch[arm].append(_localize(d, a, c))
            elif part == "retrofit":
                base_dir = os.path.join(root, "pretrain-centred")
                argv = [*base, "--dataset", "fashion-mnist", "--canvas", "64", "--epochs", str(c["pretrain_epochs"])]
                pretrain.append(_run(base_dir, [*argv, "--lr", str(c["lr"])], a))
                for arm in RETROFIT_ARMS:
                    d = os.path.join(root, f"retrofit-{arm}")
                    argv = [*base, *cluttered, "--attn", arm, "--pretrained", os.path.join(base_dir, "last.pth")]
                    argv += ["--epochs", str(c["finetune_epochs"]), "--lr", str(c["finetune_lr"])]
                    retro[arm].append(_run(d, argv, a))
                    if arm in SPATIAL:
                        loc_retro[arm].append(_localize(d, a, c))
                        loc_retro0[arm].append(_localize(d, a, c, step0=True))
            else:
                for arm in FASHION_ARMS:
                    d = os.path.join(root, f"fashion-{arm}")
                    argv = [*base, "--dataset", "fashion-mnist", "--cifar-stem", "--attn", arm]
                    fashion[arm].append(_run(d, [*argv, "--epochs", str(c["fashion_epochs"]), "--lr", str(c["lr"])], a))

    timing_path = os.path.join(runs_dir, "step_times.json")
    times: Dict[str, Dict[str, list]] = {}
    if os.path.exists(timing_path):
        with open(timing_path) as f:
            times = json.load(f)
    device = a.device or "cpu"
    for key, arms, size, stem in (("cluttered", SCRATCH_ARMS, 64, False), ("fashion", FASHION_ARMS, 28, True)):
        if key not in times:
            times[key] = step_times({arm: _spec(c, arm, stem) for arm in arms}, size, c["batch_size"], device)
            _write_json(timing_path, times)

    chance = next((r["chance"] for rows in loc_scratch.get("salient", []) for r in rows), 28 * 28 / 64 / 64)
    if "scratch" in parts or "retrofit" in parts:
        lines = _header(a, c, "Cluttered Fashion-MNIST: accuracy and localization", _train_minutes(
            [r for runs in (*scratch.values(), *retro.values()) for r in runs] + pretrain))  # fmt: skip
        lines += [
            "Test canvases: the first test items, each at a random place on a 64x64 canvas with 8 random 8x8 "
            "patches of other test items (fixed seed; `salient_timm.train.data.make_cluttered`). Accuracies: "
            "last-epoch test top-1; paired differences are arm - plain on the same seed, with a 95 % t interval "
            "over seeds. Step time: median of 5 interleaved rounds (range in brackets), training step at the "
            "study's batch size. Localization: compare each gate with the input-brightness baseline of the same "
            "map size, not only with chance: the item is bright on black (so is the clutter), and at 4x4 and 2x2 "
            "the maximum of an upsampled map lies on a plateau at the canvas's corners, which boxes seldom cover.",
            "",
        ]
        if any(scratch.values()):
            lines += ["## From scratch on cluttered", ""]
            lines += _accuracy_table(SCRATCH_ARMS, scratch, c, False, times.get("cluttered", {}))
            lines += ["", f"Plain arm's gain over its last two epochs: {_plateau(scratch['none'])}.", ""]
            lines += _versus(scratch, (("salient", "se"), ("salient", "cbam"), ("salient", "ssa")))
            lines += ["### Localization of the trained gates (last block of each stage)", ""]
            lines += _localization_table(SPATIAL, loc_scratch, chance) + [""]
        if any(retro.values()):
            lines += ["## Retrofit: base pretrained on centred Fashion-MNIST, fine-tuned on cluttered", ""]
            base_acc = [r["history"][-1]["test_top1"] for r in pretrain]
            lines += [
                f"Base: the plain network trained {c['pretrain_epochs']} epochs on the items centred on the 64 px "
                f"canvas, no clutter (its own test top-1 {_ms(base_acc)}). Every arm fine-tunes its last.pth "
                f"{c['finetune_epochs']} epochs at lr {c['finetune_lr']} (attention: the retrofit defaults, "
                "`salient_timm.retrofit_defaults`). Step 0: the model before any update, on the cluttered test set.",
                "",
                "| arm | seeds | step-0 top-1 | test top-1 (mean ± sd) | paired diff. to plain fine-tune [95 % CI] |",
                "|---|---|---|---|---|",
            ]
            plain = [_last(r) for r in retro["none"]]
            for arm in RETROFIT_ARMS:
                if not retro[arm]:
                    continue
                acc = [_last(r) for r in retro[arm]]
                step0 = _ms([r["step0"] for r in retro[arm]])
                diff = "-" if arm == "none" else _diff_cell(acc[: len(plain)], plain[: len(acc)])
                label = "plain fine-tune" if arm == "none" else f"+{arm} retrofit"
                lines.append(f"| {label} | {len(acc)} | {step0} | {_ms(acc)} | {diff} |")
            lines += ["", f"Plain fine-tune's gain over its last two epochs: {_plateau(retro['none'])}.", ""]
            lines += _versus(retro, (("salient", "se"), ("salient", "cbam"), ("salient", "ssa")))
            lines += ["### Localization of retrofitted gates: at step 0, and after fine-tuning", ""]
            lines += ["Step 0:", ""] + _localization_table(SPATIAL, loc_retro0, chance)
            lines += ["", "After fine-tuning:", ""] + _localization_table(SPATIAL, loc_retro, chance) + [""]
        lines += ["![curves](cluttered_curves.png)", "", "![maps](cluttered_maps.png)", ""]
        with open(os.path.join(a.results_dir, "cluttered.md"), "w") as f:
            f.write("\n".join(lines))
        if scratch["salient"] and scratch["cbam"]:
            first = {arm: scratch[arm][0]["dir"] for arm in ("salient", "cbam")}
            _maps_figure(first, a, c, os.path.join(a.results_dir, "cluttered_maps.png"))
    if any(fashion.values()):
        lines = _header(a, c, "Fashion-MNIST at 28 px: the seed's table on the data we have", _train_minutes(
            [r for runs in fashion.values() for r in runs]))  # fmt: skip
        lines += ["CIFAR stem, from scratch, no clutter; last-epoch test top-1.", ""]
        lines += _accuracy_table(FASHION_ARMS, fashion, c, True, times.get("fashion", {}))
        lines += ["", f"Plain arm's gain over its last two epochs: {_plateau(fashion['none'])}.", ""]
        lines += _versus(fashion, (("salient", "se"), ("salient", "ssa")))
        with open(os.path.join(a.results_dir, "fashion.md"), "w") as f:
            f.write("\n".join(lines))
    _curves(
        {"cluttered, from scratch": scratch, "cluttered, retrofit": retro, "fashion-mnist 28 px": fashion},
        os.path.join(a.results_dir, "cluttered_curves.png"),
    )
    print(f"tables written to {a.results_dir}/cluttered.md and fashion.md")


if __name__ == "__main__":
    main()
