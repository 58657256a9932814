"""Census: which timm and torchvision ResNets take which attention, by block class (issue 28).

    python scripts/resnet_census.py                  # about 10 minutes on a 2-core CPU (meta device)

Every model of timm's ResNet-like model files (``FAMILIES``), torchvision's resnets and its detection backbone
(``resnet_fpn_backbone``, FrozenBatchNorm2d) is built on the meta device, and each of ``KINDS`` is injected at each
position with ``init="identity"`` into a fresh copy. A model is classed as

| class | meaning |
|---|---|
| all | every kind at both positions |
| post only / mid only | every kind at one position; the other slot holds the model's own attention (refused, by design: ``replace=True`` overwrites it) |
| by stages | the model's own attention sits at post in some stages and at mid in others (TResNet): every kind at every free slot, each position with ``stages=`` its free stages |
| refused | no kind at any position: the refusal is listed |
| crash | an error that is not a ``SalientError`` (a bug) |

Each model also records its residual block classes and whether the gate count equals the block count. Resumable:
each model's result is kept in ``--cache`` (JSON) and skipped when run again. Writes ``--out`` (markdown).
"""

import argparse
import collections
import copy
import datetime
import json
import os
import platform
import sys
import time
from typing import Any, Dict, List

import timm
import torch
import torchvision

import salient_timm
from salient_timm import SalientError, attention_modules, find_residual_blocks, inject_attention

FAMILIES = (
    "resnet",
    "resnetv2",
    "byobnet",
    "byoanet",
    "regnet",
    "res2net",
    "resnest",
    "sknet",
    "senet",
    "tresnet",
    "nfnet",
    "dla",
    "cspnet",
    "hrnet",
)
KINDS = ("salient", "ssa", "se", "eca", "cbam")
POSITIONS = ("post", "mid")


def _models() -> List[str]:
    names = [name for family in FAMILIES for name in timm.list_models(module=family)]
    tv = [n for n in torchvision.models.list_models(module=torchvision.models) if "resne" in n]
    return names + [f"torchvision:{n}" for n in tv] + ["torchvision:resnet_fpn_backbone(resnet50)"]


def _build(name: str) -> torch.nn.Module:
    with torch.device("meta"):
        if name == "torchvision:resnet_fpn_backbone(resnet50)":
            from torchvision.models.detection.backbone_utils import resnet_fpn_backbone

            return resnet_fpn_backbone(backbone_name="resnet50", weights=None)
        if name.startswith("torchvision:"):
            return torchvision.models.get_model(name.split(":", 1)[1])
        return timm.create_model(name)


def census_one(name: str) -> Dict[str, Any]:
    """One model's row: family, block classes, per (kind, position) "ok" or the error's first line."""
    model = _build(name)
    blocks = find_residual_blocks(model)
    row: Dict[str, Any] = {
        "blocks": sorted({f"{b.adapter.block.__module__}.{b.adapter.block.__name__}" for b in blocks}),
        "n_blocks": len(blocks),
        "results": {},
    }
    for position in POSITIONS:
        for kind in KINDS:
            trial = copy.deepcopy(model)
            try:
                inject_attention(trial, kind, position=position, init="identity")
                gates = len(attention_modules(trial, position))
                row["results"][f"{kind}@{position}"] = "ok" if gates == len(blocks) else f"gates {gates} != blocks"
            except SalientError as e:
                row["results"][f"{kind}@{position}"] = (
                    f"refused: {str(e).splitlines()[0] if str(e) else type(e).__name__}"
                )
                free = _free_stages(blocks, position)
                if "already holds" in str(e) and free:
                    row["results"][f"{kind}@{position}"] = _by_stages(model, kind, position, free)
            except Exception as e:  # noqa: BLE001  a crash is what the census is for
                row["results"][f"{kind}@{position}"] = f"crash: {type(e).__name__}: {str(e)[:200]}"
    return row


def _free_stages(blocks, position: str) -> List[int]:
    stages = sorted({b.stage for b in blocks})
    return [s for s in stages if all(b.slot(position) is None for b in blocks if b.stage == s)]


def _by_stages(model: torch.nn.Module, kind: str, position: str, stages: List[int]) -> str:
    trial = copy.deepcopy(model)
    try:
        inject_attention(trial, kind, position=position, init="identity", stages=stages)
    except Exception as e:  # noqa: BLE001
        return f"crash: {type(e).__name__}: {str(e)[:200]}"
    return f"ok (stages {','.join(map(str, stages))})"


def classify(row: Dict[str, Any]) -> str:
    results = row["results"]
    if any(v.startswith(("crash", "gates")) for v in results.values()):
        return "crash"
    ok = {p: all(results[f"{k}@{p}"] == "ok" for k in KINDS) for p in POSITIONS}
    staged = {p: all(results[f"{k}@{p}"].startswith("ok") for k in KINDS) for p in POSITIONS}
    if all(ok.values()):
        return "all"
    if any(ok.values()) and not any(staged[p] and not ok[p] for p in POSITIONS):
        return "post only" if ok["post"] else "mid only"
    if any(staged.values()):
        return "by stages"
    return "refused"


def _first_refusal(row: Dict[str, Any]) -> str:
    return next((v for v in row["results"].values() if v != "ok"), "")


def _short(text: str) -> str:
    """The refusal's first clause (what is refused and why), for the table."""
    return text.split("; pass replace=True")[0].replace("|", "/")[:160]


def render(rows: Dict[str, Dict[str, Any]], seconds: float, command: str) -> str:
    classes = {name: classify(row) for name, row in rows.items()}
    counts = collections.Counter(classes.values())
    module_of = {name: family for family in FAMILIES for name in timm.list_models(module=family)}
    by_family: Dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    for name in rows:
        by_family[module_of.get(name, "torchvision")][classes[name]] += 1
    lines = [
        "# Retrofit census: timm and torchvision ResNets (issue 28)",
        "",
        f"Command: `{command}`; {datetime.date.today()}, torch {torch.__version__}, timm {timm.__version__}, "
        f"torchvision {torchvision.__version__}, salient-timm {salient_timm.__version__}, Python "
        f"{platform.python_version()}, {platform.machine()} CPU (meta device); this sitting {seconds / 60:.1f} min.",
        "",
        f'{len(rows)} models, kinds {", ".join(KINDS)} at positions {", ".join(POSITIONS)}, `init="identity"`.',
        "",
        "| class | models |",
        "|---|---|",
        *[f"| {c} | {counts.get(c, 0)} |" for c in ("all", "post only", "mid only", "by stages", "refused", "crash")],
        "",
        "## By family",
        "",
        "| family | models | all | post only | mid only | by stages | refused | crash |",
        "|---|---|---|---|---|---|---|---|",
        *[
            f"| {fam} | {sum(c.values())} | {c['all']} | {c['post only']} | {c['mid only']} | {c['by stages']} | "
            f"{c['refused']} | {c['crash']} |"
            for fam, c in sorted(by_family.items())
        ],
        "",
        "## Models that do not take every kind at both positions",
        "",
        "| model | class | block classes | first refusal (or the stages that take it) |",
        "|---|---|---|---|",
        *[
            f"| {name} | {classes[name]} | {', '.join(rows[name]['blocks']) or '-'} | "
            f"{_short(_first_refusal(rows[name]))} |"
            for name in sorted(rows)
            if classes[name] != "all"
        ],
        "",
    ]
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="results/census.md")
    parser.add_argument("--cache", default="results/census.json")
    parser.add_argument("--models", nargs="*", help="only these (default: every model of the census)")
    args = parser.parse_args(argv)
    rows: Dict[str, Dict[str, Any]] = {}
    if os.path.exists(args.cache):
        with open(args.cache) as f:
            rows = json.load(f)
    names = args.models or _models()
    start = time.time()
    for i, name in enumerate(names):
        if name in rows:
            continue
        rows[name] = census_one(name)
        print(f"[{i + 1}/{len(names)}] {name}: {classify(rows[name])}", file=sys.stderr, flush=True)
        with open(args.cache + ".tmp", "w") as f:
            json.dump(rows, f, indent=1, sort_keys=True)
        os.replace(args.cache + ".tmp", args.cache)
    rows = {name: rows[name] for name in names}
    command = "python scripts/resnet_census.py" + (" --models ..." if args.models else "")
    with open(args.out, "w") as f:
        f.write(render(rows, time.time() - start, command))
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
