"""Every salient-analyze command's JSON, and what a short salient-train run records, pinned in golden files.

A refactor that calls itself "no behaviour change" proves it here: the documents must stay identical (times,
dates, versions and paths masked), every key, string and integer exactly, every float to 1e-4 relative (or 1e-5 of
a unit where the value is near zero): another CPU's kernels move the last printed digit of a map statistic, a
behaviour change moves more. After a change that is meant to change an output, regenerate the files with
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
    difference = _first_difference(json.loads(path.read_text()), json.loads(text))
    assert difference is None, f"{name}: output differs from {path} at {difference} (SALIENT_GOLDEN_UPDATE=1 to accept)"


def _first_difference(pinned, now, where: str = "$"):
    """The JSON path of the first value that differs (floats: 1e-4 relative or 1e-5 absolute), or None."""
    if isinstance(pinned, dict) and isinstance(now, dict):
        if sorted(pinned) != sorted(now):
            return f"{where} (keys {sorted(set(pinned) ^ set(now))})"
        return next((d for k in pinned if (d := _first_difference(pinned[k], now[k], f"{where}.{k}"))), None)
    if isinstance(pinned, list) and isinstance(now, list):
        if len(pinned) != len(now):
            return f"{where} (length {len(pinned)} -> {len(now)})"
        return next(
            (d for i, (p, n) in enumerate(zip(pinned, now)) if (d := _first_difference(p, n, f"{where}[{i}]"))), None
        )
    if isinstance(pinned, float) and isinstance(now, float) and now == pytest.approx(pinned, rel=1e-4, abs=1e-5):
        return None
    return None if pinned == now and type(pinned) is type(now) else f"{where} ({pinned!r} -> {now!r})"


def test_the_comparison_lets_the_last_digit_move_and_nothing_more():
    pinned = {"rows": [{"mean": 0.075278, "n": 3, "name": "layer1"}]}
    assert _first_difference(pinned, {"rows": [{"mean": 0.075279, "n": 3, "name": "layer1"}]}) is None
    assert _first_difference(pinned, {"rows": [{"mean": 0.0754, "n": 3, "name": "layer1"}]}) == (
        "$.rows[0].mean (0.075278 -> 0.0754)"
    )
    assert _first_difference(pinned, {"rows": [{"mean": 0.075278, "n": 4, "name": "layer1"}]}) is not None
    assert _first_difference(pinned, {"rows": [{"mean": 0.075278, "n": 3.0, "name": "layer1"}]}) is not None
    assert _first_difference(pinned, {"rows": [{"mean": 0.075278, "n": 3}]}) == "$.rows[0] (keys ['name'])"


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


def _rounded(value, digits: int):
    """Floats to ``digits`` significant digits: model outputs on random weights differ across CPUs in the last bits."""
    if isinstance(value, dict):
        return {k: _rounded(v, digits) for k, v in value.items()}
    if isinstance(value, list):
        return [_rounded(v, digits) for v in value]
    return float(f"{value:.{digits}g}") if isinstance(value, float) else value


def _invoke_seeded(argv, tmp_path) -> dict:
    """The command's JSON on a model built from seed 0, with ``tmp_path`` written as ``<tmp>``."""
    import torch

    torch.manual_seed(0)
    result = CliRunner().invoke(analyze, [*argv, "--format", "json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout.replace(str(tmp_path), "<tmp>"))


def _gated_weights(path: Path, in_chans: int = 3) -> Path:
    """A salient_resnet18 weights file whose gates vary, as a trained model's do (a fresh model's are all 0.5):
    seed 0, every BatchNorm's affine drawn at random (a fresh timm block zeroes its last one, so the gate sees a
    constant), then every BatchNorm's running statistics measured on random inputs (so no gate saturates)."""
    import timm
    import torch
    from helpers import randomize_bn

    import salient_timm

    torch.manual_seed(0)
    model = randomize_bn(timm.create_model("salient_resnet18", in_chans=in_chans))
    with torch.no_grad():
        for _, gate in salient_timm.attention_modules(model):
            gate.bn.weight.normal_(0, 1.0)
            gate.bn.bias.normal_(0, 0.3)
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.momentum = None  # a cumulative average over the batches below
        model.train()
        for _ in range(4):
            model(torch.randn(8, in_chans, 64, 64))
    torch.save(model.state_dict(), path)
    return path


def test_maps_of_images_and_a_figure_print_the_pinned_statistics(tmp_path):
    from fixture_data import sample_photos

    sample_photos(tmp_path, {"a.png": "astronaut", "b.png": "coffee"})
    weights = _gated_weights(tmp_path / "w.pth")
    argv = ["maps", "-m", "salient_resnet18", "-s", "64", "--checkpoint", str(weights)]
    argv += ["-i", str(tmp_path / "a.png"), "-i", str(tmp_path / "b.png"), "--out", str(tmp_path / "maps.png")]
    document = _invoke_seeded(argv, tmp_path)
    assert (tmp_path / "maps.png").is_file()
    assert all(row["max"] - row["min"] > 0.05 for row in document["tables"][0]["rows"])  # each map varies
    _check("maps-images", _rounded(document, 5))


def test_maps_on_a_boxed_test_split_print_the_pinned_localization(tmp_path):
    from fixture_data import digits_as_fashion_mnist

    data = digits_as_fashion_mnist(tmp_path / "fashion-mnist")
    weights = _gated_weights(tmp_path / "w.pth", in_chans=1)
    argv = ["maps", "-m", "salient_resnet18", "-s", "1x64x64", "--checkpoint", str(weights)]
    argv += ["--dataset", "cluttered-fashion-mnist", "--data-dir", str(data), "--test-subset", "24", "--rows", "2"]
    document = _invoke_seeded([*argv, "--out", str(tmp_path / "loc.png")], tmp_path)
    _check("maps-localization", _rounded(document, 5))


def test_export_writes_the_pinned_formats_and_hugging_face_config(tmp_path):
    argv = ["export", "-m", "salient_resnet18", "-s", "64", "--num-classes", "10", "--random-weights"]
    argv += ["--onnx", str(tmp_path / "m.onnx"), "--exported-program", str(tmp_path / "m.pt2")]
    document = _invoke_seeded([*argv, "--hf", str(tmp_path / "hf")], tmp_path)
    for row in document["tables"][0]["rows"]:  # file sizes and parity depend on the exporter's version, not on us
        assert row["max abs diff"] is None or row["max abs diff"] < 1e-4
        row["MB"] = row["max abs diff"] = "<masked>"
    config = json.loads((tmp_path / "hf" / "config.json").read_text())
    readme = (tmp_path / "hf" / "README.md").read_text().replace(str(tmp_path), "<tmp>")
    _check("export", {"document": document, "hf config.json": config, "hf README.md": readme.splitlines()})
