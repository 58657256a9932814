"""Share and deploy: Hugging Face folder round trips, ONNX with onnxruntime parity, ExportedProgram.

Parity is checked on scikit-image's sample photos (the astronaut and Chelsea the cat), preprocessed with each
model's timm data config.
"""

import json
import os

import pytest
import timm
import torch
import torchvision
from click.testing import CliRunner
from PIL import Image

import salient_timm
from salient_analysis.cli import main
from salient_timm.deploy.export import ExportError, export_onnx, export_program, onnx_parity
from salient_timm.deploy.hub import save_hf_folder

pytest.importorskip("onnxruntime")
SMALL = ["salient_resnet18", "salient_resnet26", "ssa_resnet18"]  # the rest: -m slow
# one variant per block class, stem and width; 34, 101 and 152 only repeat the blocks of 18 and 50 (timm's own
# battery builds, traces and scripts every variant)
DEPTH_ONLY = {"salient_resnet34", "ssa_resnet34", "salient_resnet101", "ssa_resnet101", "salient_resnet152"}
LARGE = sorted(set(salient_timm.VARIANTS) - set(SMALL) - DEPTH_ONLY)


@pytest.fixture(scope="module")
def photos():
    from skimage import data

    return [Image.fromarray(getattr(data, name)()) for name in ("astronaut", "chelsea")]


def _batch(model, photos, size=64):
    config = timm.data.resolve_data_config({"input_size": (3, size, size)}, model=model)
    transform = timm.data.create_transform(**config)
    return torch.stack([transform(p.convert("RGB")) for p in photos])


@pytest.mark.parametrize("name", SMALL + [pytest.param(n, marks=pytest.mark.slow) for n in LARGE])
def test_every_registered_variant_exports_to_onnx_with_runtime_parity(name, photos, tmp_path):
    model = timm.create_model(name, num_classes=10).eval()
    path = export_onnx(model, str(tmp_path / f"{name}.onnx"), (3, 64, 64))
    batch = _batch(model, photos)
    assert onnx_parity(model, path, batch) <= 1e-4
    assert onnx_parity(model, path, batch[:1]) <= 1e-4  # the batch dimension is dynamic


@pytest.mark.slow  # a full-size resnet50 through ONNX
def test_a_retrofitted_torchvision_resnet50_exports_to_onnx(photos, tmp_path):
    model = torchvision.models.resnet50(num_classes=10)
    salient_timm.inject_attention(model, "salient", init="identity", init_gain=0.1)
    path = export_onnx(model, str(tmp_path / "tv.onnx"), (3, 64, 64))
    assert onnx_parity(model, path, _batch(timm.create_model("resnet50"), photos)) <= 1e-4


def test_exported_program_round_trip(tmp_path):
    model = timm.create_model("ssa_resnet18", cifar_stem=True, num_classes=100).eval()
    path = export_program(model, str(tmp_path / "m.pt2"), (3, 32, 32))
    x = torch.randn(3, 3, 32, 32)
    torch.testing.assert_close(torch.export.load(path).module()(x), model(x))


@pytest.mark.parametrize(
    "name, kwargs",
    [
        ("salient_resnet18", dict(cifar_stem=True, num_classes=100)),  # CIFAR stem and a 100-class head
        ("ssa_resnet18", dict(num_classes=10, attn_kwargs=dict(impl="mean"))),
        ("salient_resnet50d", dict(num_classes=5)),
    ],
)
def test_hugging_face_folder_round_trip(name, kwargs, tmp_path):
    model = timm.create_model(name, **kwargs)
    with torch.no_grad():  # non-trivial weights everywhere, gates and BN statistics included
        for p in model.parameters():
            p.normal_(0, 0.1)
    model.eval()
    save_hf_folder(model, str(tmp_path / "hf"))
    config = json.loads((tmp_path / "hf" / "config.json").read_text())
    assert config["architecture"] == name and (tmp_path / "hf" / "model.safetensors").exists()
    back = timm.create_model(f"local-dir:{tmp_path / 'hf'}", pretrained=True).eval()
    assert list(back.state_dict()) == list(model.state_dict())
    x = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(back(x), model(x), rtol=0, atol=0)


def _randomized(model):
    with torch.no_grad():  # non-trivial weights everywhere: gates, BN statistics, head
        for p in model.parameters():
            p.normal_(0, 0.05)
        for name, b in model.named_buffers():
            if name.endswith("running_var"):
                b.uniform_(0.5, 2.0)
    return model.eval()


@pytest.mark.parametrize(
    "spec",
    [
        salient_timm.ModelSpec("resnet26", attn="salient", cifar_stem=True, num_classes=100),
        salient_timm.ModelSpec("resnet18", attn="se", position="mid", num_classes=10, attn_kwargs={"rd_ratio": 0.25}),
        salient_timm.ModelSpec("torchvision:resnet50", attn="salient", num_classes=10),
        salient_timm.ModelSpec(
            "resnet18", attn="salient", init="identity", init_gain=0.1, attn_stages=(1, 2), num_classes=10
        ),
    ],
    ids=["timm-cifar-stem", "timm-se-mid", "torchvision-resnet50", "timm-identity-stages-1-2"],
)
def test_a_retrofitted_model_round_trips_through_a_hugging_face_folder(spec, tmp_path):
    model = _randomized(spec.build())
    save_hf_folder(model, str(tmp_path / "hf"))
    config = json.loads((tmp_path / "hf" / "config.json").read_text())
    assert config["architecture"] == "salient_retrofit" and config["model_args"]["base"] == spec.model
    back = timm.create_model(f"local-dir:{tmp_path / 'hf'}", pretrained=True).eval()
    assert list(back.state_dict()) == list(model.state_dict())
    x = torch.randn(2, 3, 64, 64)
    torch.testing.assert_close(back(x), model(x), rtol=0, atol=0)


NARROW = dict(channels=(16, 32, 64, 128))  # resnet18's layout at a quarter of the width: fast, same structure
REFUSED_KINDS = {"ge", "bottleneck"}  # ModelSpec refuses them (SurgeryError): nothing to share
SIZED_KINDS = {"halo", "bat"}  # run only where every map divides their block size (not at 64 px)
CORE_KINDS = {"none", *salient_timm.IDENTITY_KINDS}


def _spec_cases():
    from salient_timm.layers import attention_kinds

    for kind in attention_kinds():
        if kind in REFUSED_KINDS:
            continue
        inits = ["default", "identity"] if kind in salient_timm.IDENTITY_KINDS else ["default"]
        for init in inits:
            marks = () if kind in CORE_KINDS else (pytest.mark.slow,)
            yield pytest.param(kind, init, marks=marks, id=f"{kind}-{init}")


@pytest.mark.parametrize("kind, init", list(_spec_cases()))
def test_every_kind_and_init_model_spec_builds_round_trips_through_a_hugging_face_folder(kind, init, tmp_path):
    """Whatever ModelSpec accepts, it can share: same structure, same weights, same outputs after the reload."""
    spec = salient_timm.ModelSpec(
        "resnet18", attn=kind, init=init, init_gain=0.1 * (init == "identity"), num_classes=3, timm_kwargs=NARROW
    )
    model = _randomized(spec.build())
    save_hf_folder(model, str(tmp_path / "hf"))
    back = timm.create_model(f"local-dir:{tmp_path / 'hf'}", pretrained=True).eval()
    assert repr(back) == repr(model)
    for (name, a), b in zip(model.state_dict().items(), back.state_dict().values()):
        torch.testing.assert_close(b, a, rtol=0, atol=0, msg=name)
    if kind not in SIZED_KINDS:
        x = torch.randn(2, 3, 64, 64)
        torch.testing.assert_close(back(x), model(x), rtol=0, atol=0)


def test_a_frozen_batchnorm_model_is_shared_as_the_batchnorm_model_a_rebuild_creates(tmp_path):
    model = _randomized(salient_timm.ModelSpec("resnet18", attn="se", num_classes=3, freeze_bn=True).build())
    save_hf_folder(model, str(tmp_path / "hf"))
    back = timm.create_model(f"local-dir:{tmp_path / 'hf'}", pretrained=True).eval()
    x = torch.randn(2, 3, 64, 64)
    torch.testing.assert_close(back(x), model(x))
    assert type(model.bn1).__name__ == "FrozenBatchNorm2d"  # the caller's model is not converted


@pytest.mark.parametrize(
    "change",
    ["cifar_stem", "weight_reshaped_by_hand", "pool_swapped"],
)
def test_a_model_changed_after_it_was_built_is_refused_naming_the_change(change, tmp_path):
    model = timm.create_model("resnet26d", num_classes=3)
    if change == "cifar_stem":  # same keys as the rebuild, another stride and no max-pool: outputs differ by ~5
        salient_timm.convert_to_cifar_stem(model)
        where = "conv1.0 is Conv2d(3, 32, kernel_size=(3, 3), stride=(1, 1)"
    elif change == "weight_reshaped_by_hand":  # same keys and modules, another tensor shape
        model.conv1[0].weight.data = torch.zeros(32, 3, 5, 5)
        where = "conv1.0.weight is (32, 3, 5, 5)"
    else:  # same keys and shapes, another module
        model.global_pool.pool = torch.nn.AdaptiveMaxPool2d(1)
        where = "global_pool.pool is AdaptiveMaxPool2d"
    with pytest.raises(ExportError, match="was changed after it was built") as error:
        save_hf_folder(model.eval(), str(tmp_path / "hf"))
    assert where in str(error.value)
    assert not (tmp_path / "hf").exists()


def test_a_bare_inject_attention_is_refused_as_a_hub_folder_with_the_alternatives(tmp_path):
    model = timm.create_model("resnet18")
    salient_timm.inject_attention(model, "salient")
    with pytest.raises(ExportError, match="cannot rebuild it from a Hugging Face folder; build it with ModelSpec"):
        save_hf_folder(model, str(tmp_path / "hf"))
    assert not (tmp_path / "hf").exists()


@pytest.mark.slow  # an end-to-end training run and export
def test_salient_train_exports_its_best_model_as_a_hugging_face_folder(tmp_path):
    from salient_timm.train.cli import parse_args, run

    out, hf = tmp_path / "run", tmp_path / "hf"
    run(
        parse_args(
            [
                "--model",
                "resnet18",
                "--attn",
                "salient",
                "--cifar-stem",
                "--dataset",
                "digits",
                "--epochs",
                "1",
                "--no-progress",
                "--out",
                str(out),
                "--export-hf",
                str(hf),
            ]
        )
    )
    _, best, data_config = salient_timm.ModelSpec.from_checkpoint(str(out / "best.pth"))
    back = timm.create_model(f"local-dir:{hf}", pretrained=True).eval()
    x = torch.randn(2, *data_config["input_size"])
    torch.testing.assert_close(back(x), best(x), rtol=0, atol=0)
    card = (hf / "README.md").read_text()
    assert "| data | digits at 16 px |" in card and "| attention | salient (post) |" in card
    assert "export_hf" not in json.loads((out / "args.json").read_text())  # an action, not an option of the run
    # the folder carries the run's preprocessing: timm's standard path feeds the reloaded model as it was trained
    cfg = json.loads((hf / "config.json").read_text())["pretrained_cfg"]
    assert "tag" not in cfg and cfg["input_size"] == [1, 16, 16] and cfg["mean"] == list(data_config["mean"])
    assert _timm_pipeline_top1(back) == pytest.approx(_run_top1(out), abs=1.5)  # before: 8.8 % vs 85.0 %


def _timm_pipeline_top1(model) -> float:
    """Top-1 on the digits test split as a timm user gets it: PIL images through resolve_data_config +
    create_transform from the model's own pretrained_cfg."""
    from salient_timm.data import build_datasets

    test = build_datasets("digits", None, 8, False).test
    transform = timm.data.create_transform(**timm.data.resolve_data_config({}, model=model))
    batch = torch.stack([transform(Image.fromarray(img[0].numpy(), mode="L")) for img in test.images])
    with torch.no_grad():
        return 100.0 * (model(batch).argmax(1) == test.labels).float().mean().item()


def _run_top1(out) -> float:
    return max(row["test_top1"] for row in json.loads((out / "metrics.json").read_text()))


def test_export_command_writes_every_format_from_a_model_spec(tmp_path):
    args = [
        "export",
        "-m",
        "salient_resnet18",
        "--cifar-stem",
        "--num-classes",
        "10",
        "-s",
        "32",
        "--onnx",
        str(tmp_path / "m.onnx"),
        "--exported-program",
        str(tmp_path / "m.pt2"),
        "--hf",
        str(tmp_path / "hf"),
        "--random-weights",
        "-f",
        "json",
    ]
    refused = CliRunner().invoke(main, [a for a in args if a != "--random-weights"])
    assert refused.exit_code == 2 and "would share random weights under the base's pretrained label" in refused.output
    assert not (tmp_path / "hf").exists() and not (tmp_path / "m.onnx").exists()
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert "tag" not in json.loads((tmp_path / "hf" / "config.json").read_text())["pretrained_cfg"]
    assert "weights are random (untrained)" in (tmp_path / "hf" / "README.md").read_text()
    rows = {r["format"]: r for r in json.loads(result.stdout)["tables"][0]["rows"]}
    assert rows["ONNX"]["max abs diff"] <= 1e-4 and rows["ExportedProgram"]["max abs diff"] <= 1e-4
    assert "local-dir" in (tmp_path / "hf" / "README.md").read_text()
    back = timm.create_model(f"local-dir:{tmp_path / 'hf'}", pretrained=True)
    assert back.num_classes == 10
    assert rows["ONNX"]["MB"] * 1e6 == (tmp_path / "m.onnx").stat().st_size > 44e6  # the weights are in the file


def _onnx_export_command(path):
    args = ["export", "-m", "salient_resnet18", "--num-classes", "10", "-s", "64", "--onnx", str(path), "-f", "json"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)["tables"][0]["rows"][0]


def test_an_onnx_file_below_2gb_is_self_contained(tmp_path, photos):
    import onnxruntime

    row = _onnx_export_command(tmp_path / "m.onnx")
    moved = tmp_path / "elsewhere"
    moved.mkdir()
    (tmp_path / "m.onnx").rename(moved / "m.onnx")  # shipped alone, it still loads and runs
    assert sorted(p.name for p in tmp_path.iterdir()) == ["elsewhere"] and row["path"] == str(tmp_path / "m.onnx")
    session = onnxruntime.InferenceSession(str(moved / "m.onnx"), providers=["CPUExecutionProvider"])
    model = timm.create_model("salient_resnet18", num_classes=10).eval()
    batch = _batch(model, photos)
    assert session.run(None, {"input": batch.numpy()})[0].shape == (2, 10)


def test_an_onnx_model_over_the_limit_lists_its_external_data_and_their_total(tmp_path, monkeypatch):
    from salient_timm.deploy import export

    monkeypatch.setattr(export, "ONNX_FILE_LIMIT", 0)  # as if the weights were over protobuf's 2 GB
    row = _onnx_export_command(tmp_path / "m.onnx")
    files = export.onnx_files(str(tmp_path / "m.onnx"))
    assert len(files) == 2 and row["path"] == " + ".join(files)
    assert row["MB"] * 1e6 == sum(os.path.getsize(f) for f in files)
    assert row["MB"] > 44 and row["max abs diff"] <= 1e-4


def test_export_command_needs_a_format():
    result = CliRunner().invoke(main, ["export", "-m", "salient_resnet18"])
    assert result.exit_code == 2 and "give at least one of --onnx, --exported-program, --hf" in result.output
