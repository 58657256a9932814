"""A resumed run's options: ``--resume RUN_DIR`` reads the run's saved options (``args.json``); only the options in
``RESUME_MAY_CHANGE`` may be given again with another value, and ``--epochs`` may only grow (the schedule is then
recomputed for the new length, see ``README.md``)."""

import argparse
import json
import os
from typing import Any

import click

from .config import TrainConfigError, parse_model_kwargs

__all__ = ["RESUME_MAY_CHANGE", "resumed"]

# Options a resumed run may take with a new value: where and how it runs, not what it computes.
RESUME_MAY_CHANGE = ("epochs", "device", "workers", "no_progress", "compile", "export_hf")


def _comparable(name: str, value: Any) -> Any:
    """An option's value as given and as saved in args.json, in one form (JSON turns tuples into lists)."""
    if name == "model_kwargs":
        value = parse_model_kwargs(value)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in value.items()}
    return value


def resumed(ctx: click.Context) -> argparse.Namespace:
    """The run's saved options, with what this command line may change applied (see ``RESUME_MAY_CHANGE``)."""
    run_dir = ctx.params["resume"]
    if os.path.isfile(run_dir) and os.path.isfile(os.path.join(os.path.dirname(run_dir) or ".", "args.json")):
        run_dir = os.path.dirname(run_dir) or "."  # timm's habit: a checkpoint inside the run folder
    saved = os.path.join(run_dir, "args.json")
    if not os.path.exists(run_dir):
        raise TrainConfigError(f"--resume {run_dir}: no such folder; give the run folder salient-train wrote")
    if not os.path.isfile(saved):
        raise TrainConfigError(
            f"--resume {run_dir}: no args.json there; give the run folder salient-train wrote (it holds args.json "
            "and last.pth)"
        )
    try:
        with open(saved) as f:
            stored = json.load(f)
    except (OSError, ValueError) as e:
        raise TrainConfigError(f"--resume {run_dir}: args.json is unreadable ({e})") from e
    given = {
        name
        for name in ctx.params
        if name != "resume" and ctx.get_parameter_source(name) == click.core.ParameterSource.COMMANDLINE
    }
    clashing = sorted(
        name
        for name in given - set(RESUME_MAY_CHANGE)
        if name in stored and _comparable(name, stored[name]) != _comparable(name, ctx.params[name])
    )
    if clashing:
        shown = ", ".join(f"--{n.replace('_', '-')} {ctx.params[n]} (run: {stored[n]})" for n in clashing)
        raise TrainConfigError(
            f"--resume keeps the run's options; these differ: {shown}. Options that may change "
            f"on resume: {', '.join('--' + n.replace('_', '-') for n in RESUME_MAY_CHANGE)}"
        )
    args = argparse.Namespace(**{**ctx.params, **stored})
    for name in given & set(RESUME_MAY_CHANGE):
        setattr(args, name, ctx.params[name])
    args.resume = args.out = run_dir
    args.epochs_given = "epochs" in given
    return args
