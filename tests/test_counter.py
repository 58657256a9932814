"""salient-analyze as a counter a timm user can trust: --reparam means timm's benchmark.py --reparam, output that
can be pasted (issue 32)."""

import json

import pytest
import timm
from click.testing import CliRunner
from timm.utils import reparameterize_model

from salient_analysis.cli import main
from salient_analysis.counting import count_cost, count_params


def _json(*args):
    result = CliRunner().invoke(main, [*args, "--format", "json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def _timm_folded(name: str, size: int):
    model = reparameterize_model(timm.create_model(name).eval(), inplace=True)
    return count_params(model).params, count_cost(model, (1, 3, size, size)).total


@pytest.mark.parametrize("name", ["repvgg_a0", "mobileone_s0"])
def test_compare_and_flops_reparam_count_what_timms_reparameterize_model_gives(name):
    """The regression that landed once: --reparam counted the unfolded model. Folded counts differ from the
    unfolded ones and equal timm's reparameterize_model counted."""
    params, total = _timm_folded(name, 64)
    plain = _json("compare", "-m", name, "-s", "64")["tables"][0]["rows"]
    folded = _json("compare", "-m", name, "-s", "64", "--reparam")["tables"][0]["rows"]
    assert [r["model"] for r in folded] == [f"{name} (reparam)"]  # only the deploy form, as benchmark.py counts
    assert folded[0]["params"] == params != plain[0]["params"]
    assert folded[0]["MACs"] == total.macs != plain[0]["MACs"]
    flops = _json("flops", "-m", name, "-s", "64", "--reparam")["tables"][0]["rows"][0]
    assert flops["scope"] == "total" and flops["MACs"] == total.macs


def test_fold_bn_folds_what_timms_hooks_leave():
    """--fold-bn goes further than timm's hooks: resnet18's stem BN is folded too, so fewer elementwise ops."""
    reparam = _json("compare", "-m", "salient_resnet18", "-s", "64", "--reparam")["tables"][0]["rows"][0]
    fold_bn = _json("compare", "-m", "salient_resnet18", "-s", "64", "--fold-bn")["tables"][0]["rows"][0]
    assert fold_bn["model"].endswith("(fold-bn)") and fold_bn["elementwise"] < reparam["elementwise"]
    assert fold_bn["params"] < reparam["params"]  # the stem BN's affine and statistics are gone


def test_a_json_document_is_all_that_reaches_stdout_and_nothing_reaches_stderr():
    for args in (("compare", "-m", "resnet18,resnet26", "-s", "32"), ("flops", "-m", "resnet18", "-s", "32")):
        result = CliRunner().invoke(main, [*args, "--format", "json"])  # click keeps stdout and stderr apart
        assert result.exit_code == 0
        json.loads(result.stdout)
        assert result.stderr == ""


def test_every_column_says_its_unit_and_a_wide_table_folds_to_100_columns():
    result = CliRunner().invoke(main, ["compare", "-m", "resnet18", "-a", "none,salient", "-s", "32"])
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert max(len(line) for line in lines if not line.startswith(("Convention", "  ", "FLOPs ratio is"))) <= 100
    assert "infer_gmacs [GMACs/img]" in result.stdout and "MACs [count]" in result.stdout
    assert result.stdout.count("\nmodel ") >= 2  # folded: each part repeats the first column
    data = _json("compare", "-m", "resnet18", "-s", "32")
    assert data["tables"][0]["units"]["infer_macts"] == "M acts/img"


def test_params_without_attention_is_one_column_and_a_typo_names_the_closest_three():
    rows = _json("params", "-m", "resnet18")["tables"][0]
    assert rows["columns"] == ["part", "params"]
    result = CliRunner().invoke(main, ["params", "-m", "convnext_tin"])
    assert result.exit_code == 1 and "did you mean convnext_tiny, convnext_tiny_hnf, convnextv2_tiny?" in result.output
