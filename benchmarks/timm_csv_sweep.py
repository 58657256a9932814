"""Every row of timm's published benchmark CSV against our count in timm's units (issue 32 item 1).

    git -C pytorch-image-models show HEAD:results/benchmark-infer-amp-nchw-pt291-cu128-4090.csv > timm.csv
    python benchmarks/timm_csv_sweep.py timm.csv [--cache benchmarks/timm_csv_sweep.jsonl]
                                                 [--out benchmarks/timm_csv_sweep.md] [--fvcore-max-gmacs 40]

For each (model, infer_img_size) row: the model as timm's ``benchmark.py`` builds it (``timm.create_model``, eval,
``reparameterize_model`` where a module has a fuse/reparameterize hook, as the table's ``--reparam`` run did), built
on the meta device unless folding needs weights, counted and put in timm's units by
``salient_analysis.profiling.count_timm_units`` (attention in timm's explicit path, as the CSV counts it); params,
infer_gmacs and infer_macts compared to the CSV's 2 decimals. A row we miss is then counted by fvcore itself, as
``benchmark.py`` runs it (CPU weights, a batch of one of ``torch.ones``, attention in the same explicit path; up to
``--fvcore-max-gmacs``), to say whose count differs:

| class | meaning |
|---|---|
| exact | params, infer_gmacs and infer_macts equal the CSV's |
| fvcore differs too | fvcore today does not give the CSV's number either (a model or fvcore changed since the table) |
| ours differs | fvcore gives the CSV's number and we do not: a convention we still miss |
| params differ | the parameter count is not the CSV's (timm's definition changed); the note names namesakes with it |
| unchecked | we differ and the model is too large for a CPU fvcore run here |
| error | the model does not build or count here (the message is kept) |

Resumable: each row's result is appended to ``--cache`` (JSON lines) and skipped when run again.
"""

import argparse
import csv
import datetime
import json
import logging
import os
import platform
import sys
import time
import warnings
from collections import Counter
from typing import Dict, List

import timm
import torch
from timm.utils.model import reparameterize_model
from torch import nn

from salient_analysis.profiling import count_timm_units, reference_attention

COLUMNS = ("param_count", "infer_gmacs", "infer_macts")
HOOKS = ("fuse", "reparameterize", "switch_to_deploy")  # what timm's reparameterize_model calls


def has_reparam_hook(model: nn.Module) -> bool:
    return any(hasattr(m, hook) for m in model.modules() if m is not model for hook in HOOKS)


def build(name: str, size: int, device: str) -> nn.Module:
    """The model as benchmark.py builds it: ``create_model(name)`` at its defaults; the row's size is the input's."""
    with torch.device(device):
        model = timm.create_model(name)
    return model.eval()


def ours(name: str, size: int) -> Dict[str, object]:
    model = build(name, size, "meta")
    folded = has_reparam_hook(model)
    if folded:  # folding reads weights
        model = reparameterize_model(build(name, size, "cpu"), inplace=True).to("meta")
    units = count_timm_units(model, (1, 3, size, size))
    return {
        "param_count": sum(p.numel() for p in model.parameters()) / 1e6,
        "infer_gmacs": units["infer_gmacs"],
        "infer_macts": units["infer_macts"],
        "reparam": folded,
    }


def fvcore(name: str, size: int, folded: bool) -> Dict[str, float]:
    from fvcore.nn import ActivationCountAnalysis, FlopCountAnalysis

    logging.getLogger("fvcore").setLevel(logging.ERROR)
    model = build(name, size, "cpu")
    if folded:
        model = reparameterize_model(model, inplace=True)
    x = torch.ones(1, 3, size, size)
    with warnings.catch_warnings(), torch.no_grad(), reference_attention(model):
        warnings.simplefilter("ignore")
        flops = FlopCountAnalysis(model, x).unsupported_ops_warnings(False).uncalled_modules_warnings(False)
        acts = ActivationCountAnalysis(model, x).unsupported_ops_warnings(False).uncalled_modules_warnings(False)
        return {"infer_gmacs": flops.total() / 1e9, "infer_macts": acts.total() / 1e6}


def namesakes(name: str, csv_params: str) -> List[str]:
    """timm models of ``name``'s family (its letters before the first digit) whose parameter count, built on the
    meta device, is the CSV's to 2 decimals: the definition the CSV's row may have measured."""
    family = name[: next((i for i, ch in enumerate(name) if ch.isdigit()), len(name))]
    found = []
    for other in timm.list_models(f"{family}*"):
        with torch.device("meta"):
            model = timm.create_model(other)
        if other != name and same(sum(p.numel() for p in model.parameters()) / 1e6, csv_params):
            found.append(other)
    return found


def same(a: float, b: str) -> bool:
    return f"{a:.2f}" == f"{float(b):.2f}"


def classify(row: Dict[str, str], max_gmacs: float) -> Dict[str, object]:
    name, size = row["model"], int(row["infer_img_size"])
    record: Dict[str, object] = {"model": name, "size": size}
    start = time.perf_counter()
    try:
        record.update(ours(name, size))
    except Exception as e:  # any failure is a result of the sweep, recorded with its message
        message = (str(e).strip().splitlines() or [""])[0][:200]
        record.update(cls="error", error=f"{type(e).__name__}: {message}")
        return record
    record["seconds"] = round(time.perf_counter() - start, 2)
    if not same(record["param_count"], row["param_count"]):  # type: ignore[arg-type]
        record["cls"] = "params differ"
        record["csv_params_are"] = namesakes(name, row["param_count"])
    elif all(same(record[c], row[c]) for c in COLUMNS[1:]):  # type: ignore[arg-type]
        record["cls"] = "exact"
    elif float(row["infer_gmacs"]) > max_gmacs:
        record["cls"] = "unchecked"
    else:
        try:
            theirs = fvcore(name, size, bool(record["reparam"]))
        except Exception as e:  # fvcore's own failure is the answer for this row
            record.update(cls="fvcore differs too", fvcore_error=f"{type(e).__name__}: {str(e)[:200]}")
            return record
        record["fvcore"] = theirs
        record["cls"] = "ours differs" if all(same(theirs[c], row[c]) for c in COLUMNS[1:]) else "fvcore differs too"
    return record


def render(rows: List[Dict[str, str]], records: Dict[str, dict], csv_path: str) -> str:
    by_class = Counter(r["cls"] for r in records.values())
    lines = [
        "# timm's published benchmark CSV, row by row",
        "",
        f"command: `python {' '.join(sys.argv)}`  ",
        f"date: {datetime.date.today().isoformat()}; device: CPU ({platform.machine()}, {os.cpu_count()} cores); "
        f"python {platform.python_version()}, torch {torch.__version__}, timm {timm.__version__}; "
        f"CSV: `{os.path.basename(csv_path)}` ({len(rows)} rows; counted {len(records)})",
        "",
        "| class | rows |",
        "|---|---:|",
        *[f"| {cls} | {n} |" for cls, n in by_class.most_common()],
        "",
        f"Exact on the rows fvcore reproduces: {by_class['exact']} of {by_class['exact'] + by_class['ours differs']}.",
        "",
        "## Rows that are not exact",
        "",
        "| model | size | class | ours params / gmacs / macts | CSV | fvcore today | note |",
        "|---|---:|---|---|---|---|---|",
    ]
    for row in rows:
        r = records.get(f"{row['model']}@{row['infer_img_size']}")
        if r is None or r["cls"] == "exact":
            continue
        mine = f"{r['param_count']:.2f} / {r['infer_gmacs']:.2f} / {r['infer_macts']:.2f}" if "infer_gmacs" in r else ""
        fv = r.get("fvcore")
        fvs = f"{fv['infer_gmacs']:.2f} / {fv['infer_macts']:.2f}" if fv else r.get("fvcore_error", "")
        csv_s = f"{row['param_count']} / {row['infer_gmacs']} / {row['infer_macts']}"
        note = r.get("error", "")
        if r.get("csv_params_are"):
            note = "the CSV's params are timm's " + ", ".join(r["csv_params_are"])
        lines.append(f"| {r['model']} | {r['size']} | {r['cls']} | {mine} | {csv_s} | {fvs} | {note} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("csv", help="timm's results/benchmark-infer-*.csv")
    parser.add_argument("--cache", default="benchmarks/timm_csv_sweep.jsonl")
    parser.add_argument("--out", default="benchmarks/timm_csv_sweep.md")
    parser.add_argument("--fvcore-max-gmacs", type=float, default=40.0)
    parser.add_argument("--limit", type=int, default=None, help="only the first N rows (a trial)")
    args = parser.parse_args()
    with open(args.csv) as f:
        rows = [r for r in csv.DictReader(f) if r.get("infer_gmacs")][: args.limit]
    records: Dict[str, dict] = {}
    if os.path.exists(args.cache):
        with open(args.cache) as f:
            for line in f:
                if line.strip():
                    r = json.loads(line)
                    records[f"{r['model']}@{r['size']}"] = r
    for i, row in enumerate(rows):
        key = f"{row['model']}@{row['infer_img_size']}"
        if key in records:
            continue
        record = classify(row, args.fvcore_max_gmacs)
        records[key] = record
        with open(args.cache, "a") as f:
            f.write(json.dumps(record) + "\n")
        print(f"[{i + 1}/{len(rows)}] {key}: {record['cls']}", flush=True)
        if (i + 1) % 50 == 0:
            with open(args.out, "w") as f:
                f.write(render(rows, records, args.csv))
    with open(args.out, "w") as f:
        f.write(render(rows, records, args.csv))
    print(render(rows, records, args.csv).split("## Rows")[0])


if __name__ == "__main__":
    main()
