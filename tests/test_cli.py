"""salient-analyze commands, driven through click's test runner."""

import csv
import io
import json

import pytest
import timm
from click.testing import CliRunner

from salient_analysis.cli import main


def run(*args, code=0):
    result = CliRunner().invoke(main, list(args))
    assert result.exit_code == code, result.output
    return result.output


def run_json(*args):
    out = run(*args, "--format", "json")
    return json.loads(out[out.index("{") :])


def test_params_resnet34_salient_adds_sum_of_planes_plus_bn():
    data = run_json("params", "--model", "resnet34", "--attn", "salient")
    total = data["tables"][0]["rows"][-1]
    assert total["part"] == "total" and total["added"] == 3776 + 32
    assert [r["part"] for r in data["tables"][0]["rows"]][:5] == ["stem", "layer1", "layer2", "layer3", "layer4"]


def test_params_resnet50_mid_position():
    data = run_json("params", "--model", "resnet50", "--attn", "salient", "--position", "mid")
    assert data["tables"][0]["rows"][-1]["added"] == 3776 + 32


def test_flops_per_block_and_crosscheck():
    data = run_json("flops", "--model", "resnet18", "--attn", "se", "--input-size", "32", "--per-block", "--crosscheck")
    rows = {r["scope"]: r for r in data["tables"][0]["rows"]}
    assert "layer1.0.se" in rows and rows["total"]["FLOPs"] == 2 * rows["total"]["MACs"] + rows["total"]["elementwise"]
    libs = {r["library"]: r for r in data["tables"][1]["rows"]}
    assert set(libs) == {"fvcore", "thop"} and "sigmoid" in libs["fvcore"]["missed ops"]
    assert data["convention"].startswith("MACs =") and any("fvcore ignores" in n for n in data["notes"])


def test_size_of_registered_variant():
    data = run_json("size", "--model", "salient_resnet50", "--num-classes", "100")
    row = data["tables"][0]["rows"][0]
    base = sum(p.numel() for p in timm.create_model("resnet50", num_classes=100).parameters())
    assert row["params"] == base + 15104 + 32 and row["fp32 bytes"] > 4 * row["params"]


def test_compare_markdown_and_csv():
    md = run(
        "compare",
        "--model",
        "resnet18,resnet26",  # a basic-block and a bottleneck ResNet
        "--attn",
        "none,se,salient,ssa",
        "--input-size",
        "32",
        "--format",
        "markdown",
    )
    assert md.count("| resnet") == 8 and "Convention:" in md
    out = run("compare", "--model", "resnet18", "--attn", "none,salient", "-s", "32", "--format", "csv")
    rows = list(csv.DictReader(io.StringIO(out[out.index("model,") :])))
    assert [r["model"] for r in rows] == ["resnet18", "resnet18+salient"] and rows[0][
        "added params [count]"
    ] == "0"  # units in the header


def test_formula_se_224_all_rows_match():
    data = run_json("formula", "--model", "resnet50", "--attn", "se", "--input-size", "224")
    rows = data["tables"][0]["rows"]
    assert len(rows) == 16 and {r["verdict"] for r in rows} == {"match"}
    assert all(r["full formula FLOPs"] == r["measured FLOPs"] for r in rows)
    r = rows[0]
    assert r["seed cost"] == r["C"] ** 2 // 8 + r["C"] * r["H"] * r["W"]


def test_reproduce_markdown_has_a_verdict_per_claim():
    from salient_analysis.claims import SEED_CLAIMS

    out = run("reproduce", "--format", "markdown")
    for claim in SEED_CLAIMS:
        assert f"| {claim.id} " in out
    assert "refuted" in out and "needs CIFAR data" in out
    assert "results/fashion.md" in out and "results/cluttered.md" in out  # where the accuracy question is answered


@pytest.mark.parametrize(
    "args, code, message",
    [
        (["params", "--model", "resnet5O"], 1, "unknown model 'resnet5O'; did you mean"),
        (["params", "--model", "resnet50", "--attn", "salinet"], 1, "did you mean salient"),
        (["flops", "--model", "resnet50", "--input-size", "3x0x2"], 2, "bad input size"),
        (["flops", "--model", "resnet50", "--batch-size", "-1"], 2, "Invalid value for '--batch-size' / '-b'"),
        (["params", "--model", "vit_tiny_patch16_224", "--attn", "salient"], 1, "has no supported residual blocks"),
        (["formula", "--model", "resnet18"], 1, "has no attention blocks"),
        (["params", "--model", "resnet18", "--format", "xml"], 2, "Invalid value for '--format'"),
        (["params"], 2, "Missing option '--model'"),
    ],
)
def test_bad_arguments_give_one_line_errors(args, code, message):
    out = run(*args, code=code)
    assert message in out
    if code == 1:
        assert out.strip().count("\n") == 0 and out.startswith("Error: ")
