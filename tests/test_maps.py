"""Gate maps: capture_gates records every gate; salient-analyze maps draws them over real photos."""

import json

import pytest
import timm
import torch
from click.testing import CliRunner
from PIL import Image

from salient_analysis.cli import main
from salient_analysis.maps import PANEL_INCHES
from salient_timm import capture_gates, inject_attention
from salient_timm.train.cli import parse_args, run


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    """Real photos shipped with scikit-image: the astronaut and Chelsea the cat."""
    from skimage import data

    folder = tmp_path_factory.mktemp("photos")
    paths = []
    for name in ("astronaut", "chelsea"):
        path = folder / f"{name}.png"
        Image.fromarray(getattr(data, name)()).save(path)
        paths.append(str(path))
    return paths


@pytest.fixture(scope="module")
def digits_checkpoint(tmp_path_factory):
    """salient_resnet18 trained briefly on digits by salient-train."""
    out = tmp_path_factory.mktemp("maps") / "run"
    run(
        parse_args(
            [
                "--model",
                "salient_resnet18",
                "--dataset",
                "digits",
                "--img-size",
                "32",
                "--epochs",
                "2",
                "--out",
                str(out),
                "--no-progress",
            ]
        )
    )
    return str(out / "best.pth")


def invoke(*args, code=0):
    result = CliRunner().invoke(main, ["maps", *args])
    assert result.exit_code == code, result.output
    return result.output


@pytest.mark.parametrize("name", ["salient_resnet18", "ssa_resnet18"])
def test_capture_records_spatial_maps_without_changing_output(name):
    model = timm.create_model(name).eval()
    x = torch.randn(2, 3, 64, 64)
    expected = model(x)
    with capture_gates(model) as gates:
        out = model(x)
    assert torch.equal(out, expected)
    assert len(gates) == 8
    assert gates["layer1.0.se"].shape == (2, 1, 16, 16) and gates["layer4.1.se"].shape == (2, 1, 2, 2)
    assert all(((g > 0) & (g < 1)).all() for g in gates.values())


def test_se_gates_are_channel_weights():
    model = timm.create_model("seresnet18").eval()
    x = torch.randn(1, 3, 64, 64)
    block_input = {}
    model.layer2[0].register_forward_pre_hook(lambda m, a: block_input.update(x=a[0]))  # returns None: reads only
    with capture_gates(model) as gates:
        model(x)
    se = model.layer2[0].se
    b = model.layer2[0]
    with torch.no_grad():  # the gate is SE's own sigmoid of the pooled features of the block's branch
        branch = b.bn2(b.conv2(b.act1(b.bn1(b.conv1(block_input["x"])))))
        expected = torch.sigmoid(se.fc2(se.act(se.bn(se.fc1(branch.mean((2, 3), keepdim=True))))))
    assert gates["layer2.0.se"].shape == (1, 128, 1, 1)
    torch.testing.assert_close(gates["layer2.0.se"], expected)


def test_identity_started_gates_are_one_in_a_zero_to_two_range():
    model = timm.create_model("resnet18").eval()
    inject_attention(model, "salient", init="identity")
    with capture_gates(model) as gates:
        model(torch.randn(1, 3, 64, 64))
    assert all(torch.equal(g, torch.ones_like(g)) for g in gates.values())
    assert all(float(m.gate.scale) == 2.0 for m in (model.layer1[0].se, model.layer4[1].se))


def test_hooks_are_removed_even_after_an_error():
    model = timm.create_model("salient_resnet18").eval()
    with pytest.raises(RuntimeError):
        with capture_gates(model):
            model(torch.randn(1, 5, 32, 32))  # wrong channel count
    assert not any(m._forward_hooks for m in model.modules())


def test_models_without_gates_are_refused():
    with pytest.raises(ValueError, match="no attention gates"):
        with capture_gates(timm.create_model("resnet18")):
            pass


def _png_size(path):
    with Image.open(path) as img:
        return img.format, img.size


@pytest.mark.parametrize("all_blocks, rows_per_image", [(False, 1), (True, 2)])  # 4 stage ends; 8 blocks wrap
def test_maps_figure_from_a_salient_train_checkpoint(digits_checkpoint, photos, tmp_path, all_blocks, rows_per_image):
    out = tmp_path / "maps.png"
    args = ["--model", "salient_resnet18", "--checkpoint", digits_checkpoint, "--out", str(out), "--dpi", "60"]
    for p in photos:
        args += ["--image", p]
    text = invoke(*args, *(["--all-blocks"] if all_blocks else []))
    assert f"figure written to {out}" in text
    fmt, size = _png_size(out)
    # before: --all-blocks drew one row of 9 panels per image (2160 px wide at dpi 100), titles unreadable
    assert fmt == "PNG" and size == (round(5 * PANEL_INCHES * 60), round(2 * rows_per_image * PANEL_INCHES * 60))


def test_gate_colours_are_centred_on_the_neutral_value():
    from salient_analysis.maps.figure import _diverging

    identity_start, seed_gate = _diverging(1.0, 2.0), _diverging(0.5, 1.0)  # 2*sigmoid(0) = 1; sigmoid(0) = 0.5
    assert identity_start["cmap"] == "RdBu_r" and identity_start["norm"](1.0) == 0.5 == seed_gate["norm"](0.5)
    assert identity_start["norm"](0.0) == 0.0 and identity_start["norm"](2.0) == 1.0


def test_maps_pdf(digits_checkpoint, photos, tmp_path):
    out = tmp_path / "maps.pdf"
    invoke("--checkpoint", digits_checkpoint, "--image", photos[1], "--out", str(out))
    assert out.read_bytes()[:5] == b"%PDF-"


def test_maps_statistics_as_json(digits_checkpoint, photos):
    text = invoke("--checkpoint", digits_checkpoint, "--image", photos[0], "--image", photos[1], "--format", "json")
    rows = json.loads(text)["tables"][0]["rows"]
    assert len(rows) == 2 * 8
    first = rows[0]
    assert first["image"] == "astronaut.png" and first["block"] == "layer1.0.se" and first["shape"] == "1x8x8"
    assert all(0 <= r["min"] <= r["mean"] <= r["max"] <= 1 for r in rows)  # the seed's gate: sigmoid
    assert all(r["neutral"] == 0.5 and r["mean dev"] == pytest.approx(r["mean"] - 0.5) for r in rows)
    assert all(0 <= r["entropy"] <= 1 and r["mean |dev|"] >= abs(r["mean dev"]) - 1e-6 for r in rows)
    assert "frac > 0.5" not in first  # meaningless for a gate whose neutral value is not 0.5


def test_statistics_are_read_against_each_gates_neutral_value():
    """A scale-2 identity gate sits at its neutral 1: no deviation, although every value is > 0.5."""
    from helpers import randomize_bn

    from salient_analysis.maps import gate_stats, gate_variation
    from salient_timm import gate_neutrals

    model = randomize_bn(timm.create_model("resnet18")).eval()  # trained-like: features at the gates are not 0
    inject_attention(model, "salient", init="identity")
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad(), capture_gates(model) as gates:
        model(x)
    rows = gate_stats(gates, ["a", "b"], gate_neutrals(model))
    assert all(r["neutral"] == 1.0 and r["mean dev"] == 0 and r["mean |dev|"] == 0 and r["std"] == 0 for r in rows)
    assert all(v["std"] == 0 and v["mean |dev|"] == 0 for v in gate_variation(model, [x]).values())
    with torch.no_grad():  # a gate that does something: its deviation and spread show it
        for m in (model.layer1[0].se,):
            m.bn.weight.fill_(3.0)
    varied = gate_variation(model, [x])
    assert varied["layer1.0.se"]["std"] > 0.1 and varied["layer1.0.se"]["mean |dev|"] > 0.1
    assert varied["layer2.0.se"]["std"] == 0


def test_maps_of_se_model_in_a_picture_is_refused(photos, tmp_path):
    out = invoke("--model", "seresnet18", "--image", photos[0], "--out", str(tmp_path / "x.png"), code=1)
    assert "gates channels" in out and "--format json" in out


@pytest.mark.parametrize(
    "args, code, message",
    [
        (["--model", "salient_resnet18", "--out", "x.jpg"], 2, "end --out with .png or .pdf"),
        (["--model", "resnet18"], 1, "no attention gates"),
        ([], 1, "give --model, --checkpoint, or both"),
    ],
)
def test_maps_errors(photos, args, code, message):
    out = invoke(*args, "--image", photos[0], code=code)
    assert message in out


def test_unreadable_image(tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_text("not an image")
    out = invoke("--model", "salient_resnet18", "--image", str(bad), code=1)
    assert "cannot read image" in out


def test_maps_name_the_attention_of_a_retrofitted_run(tmp_path, photos):
    out = tmp_path / "run"
    run(
        parse_args(
            [
                "--model",
                "resnet18",
                "--attn",
                "ssa",
                "--dataset",
                "digits",
                "--img-size",
                "16",
                "--epochs",
                "1",
                "--output",
                str(out),
                "--no-progress",
            ]
        )
    )
    report = json.loads(invoke("--checkpoint", str(out / "last.pth"), "--image", photos[0], "--format", "json"))
    assert report["tables"][0]["title"] == "Gate statistics of resnet18+ssa"


def test_gate_variation_restores_the_training_mode():
    from salient_analysis.maps import gate_variation

    model = timm.create_model("salient_resnet18").train()
    gate_variation(model, [torch.randn(2, 3, 32, 32)])
    assert model.training and all(m.training for m in model.modules())


def test_a_one_channel_model_reads_photos_in_grayscale_under_one_channel_statistics(photos, tmp_path):
    """--input-size 1xHxW builds a 1-channel model; timm's cfg is RGB. The photo is read in grayscale and normalised
    with the cfg's average mean and std (a 3-channel normalisation once turned it into 3 channels: a crash)."""
    from salient_analysis.maps import with_channels

    rgb = {"input_size": (3, 224, 224), "mean": (0.485, 0.456, 0.406), "std": (0.229, 0.224, 0.225)}
    gray = with_channels(rgb, 1)
    assert gray["input_size"] == (1, 224, 224)
    assert gray["mean"] == pytest.approx((0.449,)) and gray["std"] == pytest.approx((0.226,))
    assert with_channels(rgb, 3) == rgb
    rows = json.loads(invoke("-m", "salient_resnet18", "-s", "1x64x64", "-i", photos[0], "--format", "json"))
    assert rows["tables"][0]["rows"][0]["shape"] == "1x16x16"
    hf = tmp_path / "hf"
    result = CliRunner().invoke(
        main, ["export", "-m", "salient_resnet18", "-s", "1x64x64", "--random-weights", "--hf", str(hf)]
    )
    assert result.exit_code == 0, result.output
    cfg = json.loads((hf / "config.json").read_text())["pretrained_cfg"]
    assert cfg["input_size"][0] == 1 and len(cfg["mean"]) == len(cfg["std"]) == 1  # what the model takes
    reloaded = timm.create_model(f"local-dir:{hf}", pretrained=True)
    assert reloaded(torch.zeros(1, *cfg["input_size"])).shape == (1, 1000)
