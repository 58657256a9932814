"""salient-train as a timm user meets it: preprocessing recorded exactly as evaluated, named classes carried into
every export, subsets that keep every class (issue 31)."""

import json

import pytest
import timm
import torch
from fixture_data import photo_imagefolder
from PIL import Image
from timm.data import create_transform, resolve_data_config

import salient_timm
from salient_timm import ModelSpec
from salient_timm.train.cli import parse_args, run


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    return photo_imagefolder(tmp_path_factory.mktemp("photos"))


@pytest.fixture(scope="module")
def photo_run(photos, tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    argv = ["-m", "resnet18", "--dataset", "imagefolder", "--data-dir", str(photos), "--img-size", "64"]
    argv += ["--crop-pct", "0.8", "--epochs", "2", "-b", "6", "--no-augment", "--no-progress"]
    argv += ["--out", str(out / "run"), "--export-hf", str(out / "hf")]
    run(parse_args(argv))
    return out


def test_the_exported_folder_scores_the_runs_own_accuracy_through_timms_standard_pipeline(photo_run, photos):
    """timm's way to use a shared model (resolve_data_config + create_transform on the folder's config) sees the
    images exactly as the run evaluated them: the same top-1 on the same images."""
    history = json.loads((photo_run / "run" / "metrics.json").read_text())
    best = max(history, key=lambda h: h["test_top1"])
    model = timm.create_model(f"local-dir:{photo_run / 'hf'}", pretrained=True).eval()
    config = resolve_data_config({}, model=model)
    assert config["crop_pct"] == 0.8 and config["input_size"] == (3, 64, 64)
    transform = create_transform(**config)
    classes = model.pretrained_cfg["label_names"]
    assert list(classes) == ["cat", "coffee", "rocket"]
    correct = total = 0
    for k, name in enumerate(classes):
        for path in sorted((photos / "val" / name).glob("*.jpg")):
            with torch.no_grad():
                logits = model(transform(Image.open(path).convert("RGB"))[None])
            correct += int(logits.argmax(1).item() == k)
            total += 1
    assert 100.0 * correct / total == pytest.approx(best["test_top1"])


def test_the_checkpoint_records_the_evaluation_transform_and_the_class_names(photo_run):
    spec, _, config = ModelSpec.from_checkpoint(str(photo_run / "run" / "best.pth"))
    assert config["crop_pct"] == 0.8 and config["interpolation"] == "bilinear" and config["crop_mode"] == "center"
    assert config["label_names"] == ("cat", "coffee", "rocket")
    hf = json.loads((photo_run / "hf" / "config.json").read_text())
    assert hf["label_names"] == ["cat", "coffee", "rocket"]
    assert not {"tag", "hf_hub_id", "license", "url"} & set(hf["pretrained_cfg"])  # the base's, not these weights'


def test_onnx_carries_the_class_names(photo_run, tmp_path):
    onnx = pytest.importorskip("onnx")
    from click.testing import CliRunner

    from salient_analysis.cli import main

    path = tmp_path / "m.onnx"
    result = CliRunner().invoke(main, ["export", "-c", str(photo_run / "run" / "best.pth"), "--onnx", str(path)])
    assert result.exit_code == 0, result.output
    meta = {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}
    assert json.loads(meta["label_names"]) == ["cat", "coffee", "rocket"]


def test_an_image_folder_subset_keeps_every_class_and_a_too_small_one_is_one_line(photos, tmp_path):
    from click.testing import CliRunner

    from salient_timm.data import ItemOptions, build_datasets, split_labels
    from salient_timm.train.cli import main

    data = build_datasets("imagefolder", str(photos), 32, False, items=ItemOptions(train_subset=6, test_subset=3))
    assert sorted(split_labels(data.train).tolist()) == [0, 0, 1, 1, 2, 2]  # not the first 6 files: one class
    assert sorted(split_labels(data.test).tolist()) == [0, 1, 2]
    argv = ["-m", "resnet18", "--dataset", "imagefolder", "--data-dir", str(photos), "--train-subset", "2"]
    result = CliRunner().invoke(main, [*argv, "--out", str(tmp_path / "r")])
    assert result.exit_code == 1 and "2 items cannot cover the split's 3 classes" in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_pretrained_is_timms_flag_and_does_not_swallow_the_next_option():
    args = parse_args(["-m", "resnet18", "--pretrained", "--out", "runs/x", "--dataset", "digits"])
    assert args.pretrained is True and args.out == "runs/x" and args.weights == "a1_in1k"  # timm's default tag
    tagged = parse_args(["-m", "resnet18.tv_in1k", "--pretrained", "--out", "runs/x", "--dataset", "digits"])
    assert tagged.weights == "tv_in1k"


def test_offline_pretrained_fails_at_once_naming_the_cache_and_pretrained_path(monkeypatch, tmp_path):
    """No network and nothing cached: one line, before timm starts its download retries."""
    import socket

    import huggingface_hub
    from click.testing import CliRunner

    from salient_timm.train.cli import main

    def unreachable(*args, **kwargs):
        raise OSError("network is unreachable")

    def no_download(*args, **kwargs):
        raise AssertionError("timm tried to download")

    monkeypatch.setattr(socket, "create_connection", unreachable)
    monkeypatch.setattr(huggingface_hub, "try_to_load_from_cache", lambda *a, **k: None)
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", no_download)
    argv = ["-m", "resnet18", "--pretrained", "--dataset", "digits", "--epochs", "1", "--out", str(tmp_path / "r")]
    result = CliRunner().invoke(main, argv)
    assert result.exit_code == 1 and len(result.output.strip().splitlines()) == 1
    assert "huggingface.co cannot be reached" in result.output and "--pretrained-path" in result.output
    assert "hub" in result.output  # the cache folder it looked in


def test_a_pretrained_tag_in_the_hub_cache_retrofits_offline_with_exactly_those_weights(monkeypatch, tmp_path):
    """A user who downloaded resnet18.a1_in1k once retrofits it without network: the cached weights, then a gate
    started at the identity, so the outputs are the cached model's."""
    import safetensors.torch
    from huggingface_hub import constants

    cfg = timm.models.get_pretrained_cfg("resnet18.a1_in1k")
    repo = tmp_path / ("models--" + cfg.hf_hub_id.replace("/", "--"))
    snapshot = repo / "snapshots" / ("0" * 40)
    snapshot.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0" * 40)
    torch.manual_seed(1)
    cached = timm.create_model("resnet18").eval()
    safetensors.torch.save_file(cached.state_dict(), str(snapshot / "model.safetensors"))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)

    model = ModelSpec("resnet18", attn="salient", init="identity", pretrained="a1_in1k").build().eval()
    x = torch.randn(2, 3, 64, 64)
    torch.testing.assert_close(model(x), cached(x), rtol=0, atol=0)
    assert (
        len(salient_timm.attention_modules(model)) == 8 and model.pretrained_cfg["architecture"] == "salient_retrofit"
    )


def test_initial_checkpoint_loads_exactly_this_model_and_names_a_mismatch(tmp_path):
    import safetensors.torch
    from click.testing import CliRunner

    from salient_timm.train.cli import main

    trained = timm.create_model("salient_resnet18", num_classes=10, in_chans=1)
    safetensors.torch.save_file(trained.state_dict(), str(tmp_path / "same.safetensors"))
    argv = ["-m", "salient_resnet18", "--dataset", "digits", "--img-size", "16", "--cifar-stem", "--epochs", "1"]
    argv += ["--train-subset", "64", "--no-progress"]
    plain = timm.create_model("resnet18", num_classes=10, in_chans=1).state_dict()
    safetensors.torch.save_file(plain, str(tmp_path / "other.safetensors"))
    bad = CliRunner().invoke(
        main, [*argv, "--initial-checkpoint", str(tmp_path / "other.safetensors"), "--out", str(tmp_path / "b")]
    )
    assert (
        bad.exit_code == 1 and "is not a checkpoint of this model" in bad.output and "--pretrained-path" in bad.output
    )
    both = CliRunner().invoke(
        main,
        [*argv, "--pretrained", "--pretrained-path", str(tmp_path / "same.safetensors"), "--out", str(tmp_path / "c")],
    )
    assert both.exit_code == 2 and "give one source of starting weights" in both.output


def test_a_data_folder_given_as_timms_positional_data_dir_is_an_image_folder(photos):
    args = parse_args([str(photos), "-m", "resnet18", "--input-size", "3", "48", "48", "--out", "runs/x"])
    assert args.dataset == "imagefolder" and args.data_dir == str(photos) and args.img_size == 48
    with pytest.raises(Exception, match="salient-train trains on square inputs"):
        parse_args([str(photos), "-m", "resnet18", "--input-size", "3", "48", "32", "--out", "runs/x"])


def test_model_ema_is_what_is_evaluated_saved_and_exported(tmp_path):
    """timm's --model-ema: the moving average is evaluated each epoch, kept in the checkpoint and is what a reload
    and an export get; the trained weights stay in the checkpoint for a resume."""
    argv = ["-m", "resnet18", "--dataset", "digits", "--img-size", "16", "--cifar-stem", "--epochs", "2"]
    argv += ["--train-subset", "256", "--model-ema", "--model-ema-decay", "0.9", "--no-progress"]
    run(parse_args([*argv, "--out", str(tmp_path / "r")]))
    state = torch.load(str(tmp_path / "r" / "last.pth"), weights_only=True)
    assert set(state["model_ema"]) == set(state["model"])
    assert not torch.equal(state["model_ema"]["fc.weight"], state["model"]["fc.weight"])
    row = state["metrics"][-1]
    assert "raw_test_top1" in row and "test_top1" in row
    _, model, _ = ModelSpec.from_checkpoint(str(tmp_path / "r" / "last.pth"))
    assert torch.equal(model.state_dict()["fc.weight"], state["model_ema"]["fc.weight"])


def test_salient_retrofit_by_its_name_alone_is_a_retrofitted_resnet50():
    from salient_timm import SalientBlock, attention_modules, find_residual_blocks

    assert "salient_retrofit" in timm.list_models("salient_*")
    with torch.device("meta"):
        model = timm.create_model("salient_retrofit")
    gates = attention_modules(model, "post")
    assert len(gates) == len(find_residual_blocks(model)) == 16 and all(isinstance(g, SalientBlock) for _, g in gates)


def test_timms_own_train_py_finds_our_models_after_its_device_modules_import():
    """timm's train.py imports each --device-modules module before it builds the model (README: --device-modules
    salient_timm); a fresh process that does the same finds salient_resnet50."""
    import subprocess
    import sys

    code = (
        "import importlib, timm\n"
        "assert 'salient_resnet50' not in timm.list_models()\n"
        "importlib.import_module('salient_timm')\n"
        "import torch\n"
        "with torch.device('meta'):\n"
        "    print(type(timm.create_model('salient_resnet50')).__name__)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "SalientResNet"


def test_salient_trains_fast_command_has_exactly_the_trainers_options():
    """salient_train.options is generated from the trainer's own option list: regenerate it after any change
    (python -m salient_train.generate)."""
    from salient_timm.train.cli import main as trainer
    from salient_train.cli import main as fast
    from salient_train.generate import source
    from salient_train.params import describe

    assert [describe(p) for p in fast.params] == [describe(p) for p in trainer.params]
    import salient_train.options

    assert open(salient_train.options.__file__).read() == source()


def test_salient_train_answers_help_version_and_a_typo_without_loading_torch_or_timm():
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from salient_train.cli import main\n"
        "for args, want in ((['--help'], 0), (['--version'], 0), (['--lrr', '3'], 2)):\n"
        "    try:\n"
        "        main(args)\n"
        "    except SystemExit as e:\n"
        "        assert e.code == want, (args, e.code)\n"
        "print(sorted(m for m in ('torch', 'timm', 'salient_timm') if m in sys.modules))\n"
    )
    run_ = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert run_.stdout.strip().splitlines()[-1] == "[]"
    assert "Did you mean '--lr'" in run_.stderr
