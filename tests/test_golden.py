"""Every salient-analyze command's JSON, and what a short salient-train run records, pinned in golden files.

A refactor that calls itself "no behaviour change" proves it here: the documents must stay byte-identical (times,
dates, versions and paths masked). After a change that is meant to change an output, regenerate the files with
``SALIENT_GOLDEN_UPDATE=1 python -m pytest tests/test_golden.py`` and say why in the commit.
"""

import json
import os
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from salient_analysis.cli import main as analyze

GOLDEN = Path(__file__).parent / "golden"
UPDATE = os.environ.get("SALIENT_GOLDEN_UPDATE") == "1"
# keys whose values depend on the machine, the clock or the checkout, not on the code's behaviour
VOLATILE = re.compile(r"(^|_)(s|ms|seconds|time|img_per_s|date|path|dir|out|resume|data_dir|version|pid)$")

COMMANDS = {
    "params": ["params", "-m", "resnet18", "-a", "salient"],
    "params-plain": ["params", "-m", "resnet26"],
    "flops": ["flops", "-m", "resnet18", "-a", "ssa", "-s", "32", "--per-block"],
    "flops-reparam": ["flops", "-m", "repvgg_a0", "-s", "64", "--reparam"],
    "size": ["size", "-m", "salient_resnet18", "--num-classes", "10"],
    "compare": ["compare", "-m", "resnet18", "-a", "none,salient,se", "-s", "32"],
    "compare-fold-bn": ["compare", "-m", "resnet18", "-a", "none,salient", "-s", "64", "--fold-bn"],
    "formula": ["formula", "-m", "resnet18", "-a", "salient", "-s", "32"],
    "families": ["params", "-m", "regnetx_002", "-a", "salient", "--attn-stages", "1,2"],
}


def _masked(value):
    if isinstance(value, dict):
        return {k: "<masked>" if VOLATILE.search(k) else _masked(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_masked(v) for v in value]
    if isinstance(value, float):
        return float(f"{value:.9g}")  # the last bits of a float sum are not behaviour
    return value


def _check(name: str, document) -> None:
    text = json.dumps(_masked(document), indent=1, sort_keys=True) + "\n"
    path = GOLDEN / f"{name}.json"
    if UPDATE or not path.exists():
        GOLDEN.mkdir(exist_ok=True)
        path.write_text(text)
        if not UPDATE:
            pytest.fail(f"{path} did not exist: written now; commit it")
    assert text == path.read_text(), f"{name}: output differs from {path} (SALIENT_GOLDEN_UPDATE=1 to accept)"


@pytest.mark.parametrize("name", COMMANDS)
def test_every_command_prints_the_pinned_document(name):
    result = CliRunner().invoke(analyze, [*COMMANDS[name], "--format", "json"])
    assert result.exit_code == 0, result.output
    _check(name, json.loads(result.stdout))


def test_a_short_training_run_records_the_pinned_options(tmp_path):
    """What a run writes about itself (args.json: options, recorded preprocessing, class names; the metrics'
    columns): the trainer's file format, pinned."""
    from salient_timm.train.cli import parse_args, run

    argv = ["-m", "salient_resnet18", "--dataset", "digits", "--img-size", "16", "--cifar-stem", "--epochs", "1"]
    argv += ["--train-subset", "128", "--holdout", "0.25", "--no-progress", "--out", str(tmp_path / "r")]
    run(parse_args(argv))
    args = json.loads((tmp_path / "r" / "args.json").read_text())
    metrics = json.loads((tmp_path / "r" / "metrics.json").read_text())
    _check("train-args", {"args": args, "metric columns": sorted(metrics[0])})
