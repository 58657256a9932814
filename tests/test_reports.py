"""Readable reports and the one build seam: what a user reads and relies on across commands."""

import json
import subprocess
import sys

import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import save_file

from salient_analysis.cli import main
from salient_timm import ModelSpec, attention_modules
from salient_timm.train.report import curves_figure


def _run(*args):
    result = CliRunner().invoke(main, list(args))
    assert result.exit_code == 0, result.output
    return result.stdout


def test_reproduce_fits_a_100_column_terminal_and_keeps_every_reason_below_the_table():
    text = _run("reproduce")
    assert max(len(line) for line in text.splitlines()) <= 100
    data = json.loads(_run("reproduce", "--format", "json"))
    rows = data["tables"][0]["rows"]
    assert "seed/SalientNet.md" not in text and "design note this project reproduces" in data["tables"][0]["title"]
    for row in rows:  # each claim's whole measurement and reason is in a note
        assert any(row["claim"] + ":" in note or row["claim"] + "," in note for note in data["notes"]), row["claim"]
    assert all(len(row["measured"]) <= 24 for row in rows)


def test_help_says_what_the_seed_is():
    text = _run("--help")
    assert "The seed is the SalientNet design note this project reproduces" in " ".join(text.split())


def test_flops_stage_rows_add_up_to_the_total():
    data = json.loads(_run("flops", "-m", "resnet26d", "-a", "salient", "-s", "32", "--no-crosscheck", "-f", "json"))
    rows = {r["scope"]: r for r in data["tables"][0]["rows"]}
    stages = [rows[s] for s in ("stem", "layer1", "layer2", "layer3", "layer4", "head")]
    for column in ("MACs", "elementwise", "FLOPs"):
        assert sum(r[column] for r in stages) == rows["total"][column]


@pytest.mark.parametrize(
    "model,size,stages",
    [
        ("vit_small_patch16_224", "224", ["patch_embed", *(f"blocks.{i}" for i in range(12)), "norm", "head"]),
        ("convnext_atto", "32", ["stem", "stages.0", "stages.1", "stages.2", "stages.3", "head"]),
    ],
)
def test_any_timm_model_reads_in_its_own_stages_which_add_up_to_the_total(model, size, stages):
    """timm's structure (feature_info's stage modules), not the ResNet names: a ViT's cost is not all 'stem'."""
    data = json.loads(_run("flops", "-m", model, "-s", size, "--no-crosscheck", "-f", "json"))
    rows = {r["scope"]: r for r in data["tables"][0]["rows"]}
    parts = [scope for scope in rows if scope != "total"]
    assert [scope for scope in parts if scope != "outside the stages"] == stages
    for column in ("MACs", "elementwise", "FLOPs"):
        assert sum(rows[scope][column] for scope in parts) == rows["total"][column]
    assert max(rows[scope]["MACs"] for scope in stages) < 0.5 * rows["total"]["MACs"]
    params = json.loads(_run("params", "-m", model, "-f", "json"))["tables"][0]["rows"]
    own = ["outside the stages"] if model.startswith("vit") else []  # cls_token, pos_embed: the root's own
    assert [r["part"] for r in params][:-1] == stages + own
    assert sum(r["params"] for r in params[:-1]) == params[-1]["params"]  # one column: nothing is added


def test_maps_takes_the_shared_model_options(tmp_path):
    from PIL import Image

    image = tmp_path / "gray.png"
    Image.new("RGB", (40, 40), (120, 90, 60)).save(image)
    data = json.loads(
        _run(
            "maps",
            "-m",
            "resnet18",
            "--attn",
            "salient",
            "--position",
            "mid",
            "--cifar-stem",
            "--num-classes",
            "10",
            "-s",
            "32",
            "-i",
            str(image),
            "-f",
            "json",
        )
    )
    rows = data["tables"][0]["rows"]
    assert len(rows) == 8 and all(r["block"].endswith("attn_mid") for r in rows)
    assert "resnet18+salient@mid" in data["tables"][0]["title"]


def test_curves_have_integer_epoch_ticks_an_lr_panel_and_the_step0_point():
    history = [
        {
            "epoch": e,
            "lr": 0.1 / e,
            "train_loss": 2.0 / e,
            "test_loss": 2.2 / e,
            "train_top1": 50.0 + e,
            "test_top1": 45.0 + e,
        }
        for e in (1, 2, 3)
    ]
    fig = curves_figure(history, "run", initial={"test_loss": 3.0, "test_top1": 11.0})
    loss, acc, lr = fig.axes
    assert lr.get_ylabel() == "learning rate" and list(lr.lines[0].get_ydata()) == [0.1, 0.05, 0.1 / 3]
    assert all(float(t).is_integer() for t in acc.get_xticks())
    step0 = [line for line in acc.lines if list(line.get_xdata()) == [0]]
    assert step0 and list(step0[0].get_ydata()) == [11.0]


def _row(e, **extra):
    return {
        "epoch": e,
        "lr": 0.1 / e,
        "train_loss": 1.0,
        "test_loss": 1.1,
        "train_top1": 50.0,
        "test_top1": 45.0,
        **extra,
    }


def test_a_one_epoch_run_shows_whole_epoch_ticks():
    fig = curves_figure([_row(1)], "one epoch")
    for ax in fig.axes:  # before: ticks 0.945 ... 1.050
        shown = [t for t in ax.get_xticks() if ax.get_xlim()[0] <= t <= ax.get_xlim()[1]]
        assert shown == [1.0]
    fig = curves_figure([_row(1)], "fine-tune", initial={"test_loss": 3.0, "test_top1": 11.0})
    assert [t for t in fig.axes[1].get_xticks() if -0.5 <= t <= 1.5] == [0.0, 1.0]


def test_a_retrofits_lr_panel_shows_the_attention_groups_lr():

    history = [_row(1, attn_lr=3.0), _row(2, attn_lr=1.5)]
    lr_panel = curves_figure(history, "retrofit").axes[2]
    lines = {line.get_label(): list(line.get_ydata()) for line in lr_panel.lines}
    assert lines == {"backbone": [0.1, 0.05], "attention": [3.0, 1.5]} and lr_panel.get_yscale() == "log"


def test_metrics_csv_takes_a_column_that_a_resumed_run_adds(tmp_path):
    from salient_timm.train.report import write_metrics

    write_metrics(str(tmp_path), [_row(1), _row(2, attn_lr=1.5)])
    header, first, second = (tmp_path / "metrics.csv").read_text().strip().splitlines()
    assert header.endswith(",attn_lr") and first.endswith(",") and second.endswith(",1.5")


def test_the_toolkit_never_imports_the_trainer():
    code = (  # it reads data sets (salient_timm.data), nothing of the trainer
        "import sys, salient_analysis.cli, salient_analysis.maps, salient_analysis.profiling, "
        "salient_analysis.claims; print(any(m.startswith('salient_timm.train') for m in sys.modules))"
    )
    assert (
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
        == "False"
    )


def test_model_spec_builds_weights_then_attention_and_round_trips_a_weights_file(tmp_path):
    base = ModelSpec("resnet18", num_classes=7, cifar_stem=True).build()
    path = tmp_path / "w.safetensors"
    save_file(base.state_dict(), str(path))
    spec = ModelSpec("resnet18", num_classes=7, cifar_stem=True, pretrained=str(path), attn="salient", init="identity")
    model = spec.build().eval()
    x = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(model(x), base.eval()(x))  # the weights, then an exact-identity gate
    assert len(attention_modules(model)) == 8 and spec.label == "resnet18+salient (retrofit)"
    assert spec == spec.replace()
    keyed = {ModelSpec("resnet18", attn_kwargs={"impl": "conv"}): 1}  # specs key caches: equal specs, equal keys
    assert keyed[ModelSpec("resnet18", attn_kwargs=(("impl", "conv"),))] == 1


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(pretrained="missing/weights.pth"), "pretrained weights file not found"),
        (dict(attn="salinet"), "did you mean salient"),
    ],
)
def test_model_spec_errors_are_one_family(kwargs, message):
    import salient_timm

    with pytest.raises(salient_timm.SalientError, match=message):
        ModelSpec("resnet18", **kwargs).build()


def test_a_missing_extra_is_named_in_one_line(monkeypatch):
    from salient_timm.extras import MissingExtraError, require

    monkeypatch.setitem(sys.modules, "matplotlib", None)  # as if not installed: importing it raises ImportError
    with pytest.raises(
        MissingExtraError,
        match=r"curves.png needs matplotlib, .*pip install 'salient-timm\[plot\]' "
        r"\(from a source checkout: pip install '\.\[plot\]'\)",
    ):
        require("matplotlib", "plot", "curves.png")
