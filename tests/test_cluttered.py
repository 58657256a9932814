"""Cluttered Fashion-MNIST, the localization metrics and the study script (issue 18).

Tests never need the Fashion-MNIST files: scikit-learn's real digits, upsampled to 28x28 and written as idx
files, stand in for them.
"""

import importlib.util
import json
import os
import re
import shutil
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from fixture_data import digits_as_fashion_mnist

from salient_analysis.cli import main as analyze
from salient_analysis.maps import localization
from salient_timm import ModelSpec, capture_gates
from salient_timm.data import DatasetError, ItemOptions, build_datasets, make_cluttered
from salient_timm.train.cli import main as train_main
from salient_timm.train.cli import parse_args, run

ROOT = Path(__file__).resolve().parents[1]
NARROW = ["--model-kwargs", "channels=8,16,32,64", "--model-kwargs", "stem_width=8"]


@pytest.fixture(scope="module")
def digit_items(tmp_path_factory):
    """A Fashion-MNIST-format folder holding scikit-learn's digits as 28x28 items (train 1437, test 360); the
    test items are made 1 brighter than any train item can be at its brightest (train <= 200, test >= 201)."""
    return str(digits_as_fashion_mnist(tmp_path_factory.mktemp("fm"), brighter_test=True))


def _items(n=6, size=28, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(1, 256, (n, 1, size, size), generator=g, dtype=torch.uint8), torch.arange(n) % 10


# -- the data set ---------------------------------------------------------------------------------------------


def test_cluttered_canvases_are_deterministic_and_the_seed_moves_the_items():
    images, labels = _items(20)
    a = make_cluttered(images, labels, seed=3)
    b = make_cluttered(images, labels, seed=3)
    c = make_cluttered(images, labels, seed=4)
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert not torch.equal(a[2], c[2]) and not torch.equal(a[0], c[0])  # other positions, other canvases
    assert a[0].shape == (20, 1, 64, 64) and a[0].dtype == torch.uint8
    assert a[2].dtype == torch.int64 and torch.equal(a[1], labels)


def test_every_box_is_inside_the_canvas_and_shows_its_whole_item():
    images, labels = _items(50)
    images[:, :, 10:14] = 0  # items with black pixels: the clutter may show there, never over the item
    canvases, _, boxes = make_cluttered(images, labels, canvas=48, clutter=12, seed=1)
    assert (boxes[:, :2] >= 0).all() and (boxes[:, 2:] <= 48).all()
    assert ((boxes[:, 2] - boxes[:, 0]) == 28).all() and ((boxes[:, 3] - boxes[:, 1]) == 28).all()
    for canvas, item, (x0, y0, x1, y1) in zip(canvases, images, boxes.tolist()):
        inside = canvas[:, y0:y1, x0:x1]
        assert torch.equal(inside[item > 0], item[item > 0])


def test_clutter_is_cut_from_other_items():
    items = torch.stack([torch.full((1, 28, 28), 10), torch.full((1, 28, 28), 20)]).to(torch.uint8)
    canvases, _, boxes = make_cluttered(items, torch.tensor([0, 1]), clutter=8, seed=0)
    for i, other in ((0, 20), (1, 10)):
        x0, y0, x1, y1 = boxes[i].tolist()
        outside = canvases[i, 0].clone()
        outside[y0:y1, x0:x1] = 0
        assert set(outside.unique().tolist()) == {0, other}  # 8 patches of the other item, none of its own


def test_test_canvases_are_built_from_test_items_only(digit_items):
    data = build_datasets("cluttered-fashion-mnist", digit_items, 64, False, items=ItemOptions(canvas=64, clutter=8))
    test, train = data.test.images, data.train.images
    assert int(train.max()) <= 200  # train items never reach test brightness
    assert int(test[test > 0].min()) >= 201  # every pixel, clutter included, comes from a test item
    x, label, box = data.test.with_boxes()[0]
    assert x.shape == (1, 64, 64) and box.shape == (4,)
    again = build_datasets("cluttered-fashion-mnist", digit_items, 64, False, items=ItemOptions(canvas=64, clutter=8))
    assert torch.equal(again.test.images, test)  # the same test set for every run


def test_boxes_follow_a_resized_input(digit_items):
    data = build_datasets("cluttered-fashion-mnist", digit_items, 32, False, items=ItemOptions(canvas=64, clutter=2))
    big = build_datasets("cluttered-fashion-mnist", digit_items, 64, False, items=ItemOptions(canvas=64, clutter=2))
    assert data.test[0][0].shape == (1, 32, 32)
    assert torch.equal(data.test.boxes, (big.test.boxes / 2).round().long())


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(canvas=20), "smaller than the 28x28 items"),
        (dict(patch=40), "patch must be 1 to 28"),
        (dict(clutter=-1), "clutter must be 0 or more"),
    ],
)
def test_make_cluttered_refuses_bad_sizes(kwargs, message):
    with pytest.raises(DatasetError, match=message):
        make_cluttered(*_items(4), **kwargs)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--dataset", "digits", "--canvas", "40"], "--canvas applies to fashion-mnist and cluttered"),
        (["--dataset", "fashion-mnist", "--clutter", "3"], "--clutter applies to cluttered-fashion-mnist"),
        (["--dataset", "cluttered-fashion-mnist", "--canvas", "20"], "--canvas must be 28 to 1024"),
        (["--dataset", "cluttered-fashion-mnist", "--clutter", "-2"], "--clutter must be 0 to 256"),
        (["--dataset", "digits", "--train-subset", "0"], "--train-subset must be at least 1"),
        (["--dataset", "digits", "--model-kwargs", "channels"], "--model-kwargs takes KEY=VALUE"),
    ],
)
def test_salient_train_refuses_bad_data_options_in_one_line(tmp_path, argv, message):
    result = CliRunner().invoke(train_main, ["-m", "resnet18", "--out", str(tmp_path / "r"), *argv])
    assert result.exit_code == 2 and message in result.output and "Traceback" not in result.output
    assert not (tmp_path / "r").exists()


def test_a_subset_larger_than_the_split_is_one_line(tmp_path, digit_items):
    argv = ["-m", "resnet18", "--dataset", "fashion-mnist", "--data-dir", digit_items, "--test-subset", "9999"]
    result = CliRunner().invoke(train_main, [*argv, "--out", str(tmp_path / "r")])
    assert result.exit_code == 1 and "--test-subset 9999: 9999 items is more than the split's 360" in result.output


# -- the metrics ----------------------------------------------------------------------------------------------


def test_cbam_exposes_its_spatial_map_and_localization_scores_it():
    model = ModelSpec("resnet18", attn="cbam", num_classes=10, in_chans=1).build().eval()
    with capture_gates(model) as gates, torch.no_grad():
        model(torch.randn(2, 1, 64, 64))
    assert gates["layer1.0.se"].shape == (2, 1, 16, 16)  # CBAM's spatial gate, not its channel gate
    x = torch.zeros(4, 1, 64, 64)
    x[:, :, 4:32, 30:58] = 1.0
    rows, top1 = localization(model, x, torch.tensor([[30, 4, 58, 32]] * 4), torch.zeros(4, dtype=torch.long))
    gates = [r["block"] for r in rows if r["kind"] == "gate"]
    assert "layer4.1.se" in gates and len(gates) == 8 and 0 <= top1 <= 100
    brightness = next(r for r in rows if r["block"] == "input brightness" and r["map"] == "16x16")
    assert brightness["pointing game"] == 1.0 and brightness["energy in box"] > 0.9
    for hw in ("16x16", "8x8", "4x4", "2x2"):  # chance, ceiling and the network's own features at every map size
        kinds = {(r["kind"], r["block"]) for r in rows if r["map"] == hw}
        assert {("reference", "chance (random maps)"), ("reference", "ceiling (the box itself)")} <= kinds
        assert any(kind == "features" for kind, _ in kinds)


def test_se_has_no_map_to_localize():
    from salient_analysis.maps import MapsError

    model = ModelSpec("resnet18", attn="se", num_classes=10, in_chans=1).build()
    with pytest.raises(MapsError, match="not spatial"):
        localization(model, torch.randn(2, 1, 32, 32), torch.tensor([[0, 0, 8, 8]] * 2))


# -- salient-train and salient-analyze on it ------------------------------------------------------------------


@pytest.fixture(scope="module")
def cluttered_run(digit_items, tmp_path_factory):
    """A narrowed resnet18 + salient trained briefly on cluttered digits by salient-train."""
    out = tmp_path_factory.mktemp("cl") / "run"
    argv = ["-m", "resnet18", "--attn", "salient", *NARROW, "--dataset", "cluttered-fashion-mnist"]
    argv += ["--data-dir", digit_items, "--train-subset", "256", "--test-subset", "64", "--epochs", "1"]
    run(parse_args([*argv, "--out", str(out), "--no-progress"]))
    return out


def test_a_narrowed_model_reloads_as_itself(cluttered_run, tmp_path):
    spec, model, config = ModelSpec.from_checkpoint(str(cluttered_run / "best.pth"))
    assert dict(spec.timm_kwargs) == {"channels": (8, 16, 32, 64), "stem_width": 8}
    assert model.layer4[0].conv1.out_channels == 64 and config["input_size"] == (1, 64, 64)
    import timm

    from salient_timm.deploy.hub import save_hf_folder

    save_hf_folder(model, str(tmp_path / "hf"), "card")
    again = timm.create_model(f"local-dir:{tmp_path / 'hf'}", pretrained=True).eval()
    x = torch.randn(2, 1, 64, 64)
    assert torch.equal(again(x), model(x))  # the folder rebuilds the narrowed model, not a full-width one


def test_maps_on_a_boxed_dataset_prints_localization_and_draws_boxes(cluttered_run, digit_items, tmp_path):
    fig = tmp_path / "maps.png"
    args = ["maps", "-c", str(cluttered_run / "best.pth"), "--dataset", "cluttered-fashion-mnist"]
    args += ["--data-dir", digit_items, "--test-subset", "64", "--rows", "2", "--out", str(fig), "-f", "json"]
    result = CliRunner().invoke(analyze, args)
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)["tables"][0]["rows"]
    gates = [r for r in rows if r["kind"] == "gate"]
    assert len(gates) == 8 and all(0 <= r["pointing game"] <= 1 and 0 <= r["energy in box"] <= 1 for r in gates)
    constant = [r for r in rows if r["block"] == "chance (constant map)"]
    assert len(constant) == 4 and all(r["pointing game"] == pytest.approx(28 * 28 / 64 / 64) for r in constant)
    assert fig.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_maps_refuses_a_dataset_without_boxes_in_one_line(cluttered_run, digit_items):
    result = CliRunner().invoke(
        analyze,
        ["maps", "-c", str(cluttered_run / "best.pth"), "--dataset", "fashion-mnist", "--data-dir", digit_items],
    )
    assert result.exit_code == 1 and "give --canvas" in result.output and "Traceback" not in result.output


# -- the study ------------------------------------------------------------------------------------------------


def _study():
    spec = importlib.util.spec_from_file_location("cluttered_study", ROOT / "scripts" / "cluttered_study.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_paired_interval_is_a_t_interval_over_seeds():
    mean, lo, hi = _study().paired_interval([2.0, 3.0, 4.0], [1.0, 1.0, 1.0])
    assert mean == 2.0 and (lo, hi) == pytest.approx((2.0 - 2.4841, 2.0 + 2.4841), abs=1e-3)  # t(0.975, 2) = 4.303


def test_the_schedule_rule_prefers_the_shorter_length_unless_a_longer_one_wins_clearly():
    choose = _study().choose_length
    assert choose({10: 80.0, 15: 80.2, 20: 80.3}) == 10  # within the 0.3-point tie
    assert choose({10: 80.0, 15: 80.5, 20: 80.6}) == 15
    assert choose({5: 70.0, 10: 71.0}) == 10


def test_detectable_effect_follows_the_paired_spread():
    study = _study()
    small = study.detectable_effect([1.0, 1.1, 0.9, 1.0, 1.05], [0.0] * 5)
    large = study.detectable_effect([1.0, 2.1, -0.1, 1.0, 0.5], [0.0] * 5)
    assert 0 < small < large


@pytest.mark.slow
def test_study_runs_end_to_end_and_resumes_even_without_its_run_folders(digit_items, tmp_path):
    study = _study()
    argv = ["--data-dir", digit_items, "--runs-dir", str(tmp_path / "runs"), "--results-dir", str(tmp_path / "res")]
    argv += ["--main-seeds", "2", "--other-seeds", "2", "--train-subset", "160", "--test-subset", "48"]
    argv += ["--holdout", "0.2", "--batch-size", "32", "--scratch-lengths", "1,2", "--finetune-lengths", "1"]
    argv += ["--pretrain-epochs", "1", "--channels", "8,16,32,64", "--stem-width", "8", "--pilot-seed", "9"]
    study.main(argv)
    scratch = (tmp_path / "res" / "cluttered.md").read_text()
    retrofit = (tmp_path / "res" / "cluttered_retrofit.md").read_text()
    for text in (scratch, retrofit):
        assert "results/evidence_protocol.md" in text
        assert f"`python scripts/cluttered_study.py {' '.join(argv)}`" in text
    assert re.search(r"\| scratch \| [12] \| [\d.]+ \| \*\*yes\*\* \|", scratch)  # the pilot's choice, on validation
    assert re.search(r"\| fine-tune \| 1 \| [\d.]+ \| \*\*yes\*\* \|", retrofit)
    for arm in ("plain", "+salient", "+salient stages 1-2", "+salient stage 1"):
        assert f"| {arm} | 2 | " in scratch
    for arm in ("plain fine-tune", "+salient retrofit", "+constant retrofit"):
        assert f"| {arm} | 2 | " in retrofit and f"| {arm} | 2 | " not in scratch
    for text in (scratch, retrofit):
        assert "gate − control [95 % CI]" in text and "| 16x16 | pointing game |" in text
        assert "| 2x2 | energy in box |" in text
    for name in ("cluttered_curves.png", "cluttered_retrofit_curves.png"):
        assert (tmp_path / "res" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # a second sitting trains nothing again: every finished run is read back
    last = sorted((tmp_path / "runs").rglob("last.pth"))
    stamps = [os.stat(p).st_mtime_ns for p in last]
    study.main(argv)
    assert [os.stat(p).st_mtime_ns for p in last] == stamps
    # the machine is lost with every run folder: the records rewrite the same tables and train nothing
    shutil.rmtree(tmp_path / "runs")
    study.main(argv)
    assert not (tmp_path / "runs").exists() or not list((tmp_path / "runs").rglob("last.pth"))
    assert (tmp_path / "res" / "cluttered.md").read_text() == scratch
    assert (tmp_path / "res" / "cluttered_retrofit.md").read_text() == retrofit


@pytest.mark.slow
def test_a_part_leaves_the_other_parts_tables_as_they_are(digit_items, tmp_path):
    res = tmp_path / "res"
    res.mkdir()
    (res / "cluttered.md").write_text("the scratch tables of an earlier sitting")
    argv = ["--data-dir", digit_items, "--runs-dir", str(tmp_path / "runs"), "--results-dir", str(res)]
    argv += ["--parts", "retrofit", "--other-seeds", "1", "--train-subset", "100", "--test-subset", "24"]
    argv += ["--holdout", "0.2", "--batch-size", "32", "--finetune-lengths", "1", "--pretrain-epochs", "1"]
    argv += ["--channels", "8,16,32,64", "--stem-width", "8", "--pilot-seed", "9"]
    _study().main(argv)
    assert (res / "cluttered.md").read_text() == "the scratch tables of an earlier sitting"
    assert "| +constant retrofit | 1 | " in (res / "cluttered_retrofit.md").read_text()
    assert not (tmp_path / "runs" / "pilot-s9" / "scratch-10").exists()  # the scratch pilot is not the part's


def test_resume_accepts_the_same_model_kwargs_and_names_other_ones(cluttered_run):
    same = parse_args(["--resume", str(cluttered_run), *NARROW, "--epochs", "2"])
    assert same.model_kwargs == {"channels": [8, 16, 32, 64], "stem_width": 8}
    result = CliRunner().invoke(train_main, ["--resume", str(cluttered_run), "--model-kwargs", "stem_width=16"])
    assert result.exit_code == 2 and "--model-kwargs" in result.output and "run:" in result.output


def test_selected_arms_run_seed_by_seed_and_tables_only_trains_nothing(digit_items, tmp_path):
    """A sitting that stops part-way leaves every selected arm at the same seeds; the tables are then written from
    the records alone, each arm up to its first missing seed, pairing by seed; a schedule fixed by an earlier pilot
    skips the scratch pilot."""
    study = _study()
    res, runs = tmp_path / "res", tmp_path / "runs"
    argv = ["--data-dir", digit_items, "--runs-dir", str(runs), "--results-dir", str(res), "--parts", "scratch"]
    argv += ["--other-seeds", "2", "--main-seeds", "2", "--train-subset", "100", "--test-subset", "24"]
    argv += ["--holdout", "0.2", "--batch-size", "32", "--scratch-lengths", "1,2", "--scratch-epochs", "1"]
    argv += ["--channels", "8,16,32,64", "--stem-width", "8", "--pilot-seed", "9"]
    argv += ["--scratch-arms", "none,salient-stages1"]
    study.main(argv)
    text = (res / "cluttered.md").read_text()
    assert not (runs / "pilot-s9").exists() and "1 epochs, given by `--scratch-epochs`" in text
    assert "| setting | epochs |" not in text and "Does the trained gate point" not in text  # no empty tables
    assert "| plain | 2 | " in text and "| +salient stage 1 | 2 | " in text and "| +salient | " not in text
    assert sorted(p.name for p in (runs / "s1").iterdir()) == ["scratch-none", "scratch-salient-stages1"]
    # a lost seed-1 plain run: its arm stops at seed 0, the gated arm's seed 1 is still shown, paired on seed 0 only
    (res / "cluttered_runs" / "s1" / "scratch-none.json").unlink()
    stamps = [os.stat(p).st_mtime_ns for p in runs.rglob("last.pth")]
    study.main([*argv, "--tables-only"])
    assert [os.stat(p).st_mtime_ns for p in runs.rglob("last.pth")] == stamps
    assert not (res / "cluttered_runs" / "s1" / "scratch-none.json").exists()
    text = (res / "cluttered.md").read_text()
    assert "| plain | 1 | " in text and "| +salient stage 1 | 2 | " in text
    row = next(line for line in text.splitlines() if line.startswith("| +salient stage 1 | 2 | "))
    assert "nan" in row  # one pair: no interval, said as such rather than as a two-seed one


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--scratch-arms", "salient,bogus"], "valid: none, salient, salient-stages12, salient-stages1"),
        (["--scratch-arms", "salient"], "needs none (plain)"),
        (["--scratch-epochs", "12"], "not a protocol length; valid: 10,15,20"),
    ],
)
def test_the_study_refuses_unknown_arms_and_lengths_in_one_line(extra, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        _study().main(extra)
    assert exit_info.value.code == 2 and message in capsys.readouterr().err
