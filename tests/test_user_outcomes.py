"""What a user would notice if it broke: one test per behaviour that a planted bug left unnoticed (issue 35).

Each test states the outcome with the right value, so the mutation check (results/mutation.md) can kill the
change that breaks it."""

import copy
import warnings

import pytest
import timm
import torch
from helpers import randomize_bn
from timm.utils import reparameterize_model
from torch import nn

import salient_timm
from salient_timm import SalientBlock, SurgeryError, inject_attention, reparameterize
from salient_timm.deploy.fold import FoldedResidualBlock


def _narrow(name: str, **kwargs) -> nn.Module:
    return timm.create_model(name, channels=(8, 16, 32, 64), stem_width=8, num_classes=5, **kwargs)


def _close(a: nn.Module, b: nn.Module, x: torch.Tensor, tol: float = 1e-5) -> None:
    with torch.no_grad():
        torch.testing.assert_close(a(x), b(x), rtol=tol, atol=tol)


# -- folding -------------------------------------------------------------------------------------------------------


def test_a_mid_gate_before_an_anti_aliasing_pool_is_not_folded_across_it_and_says_why():
    """resnetaa: a blur pool sits between the mid gate and conv3; folding the gate into conv3 across it would change
    the outputs. The deploy model equals the eval model, and the warning names the pool."""
    model = randomize_bn(inject_attention(_narrow("resnetaa50"), "salient", position="mid")).eval()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        folded = reparameterize(model)
    _close(folded, model, torch.randn(2, 3, 64, 64))
    message = next(str(w.message) for w in caught if "reparameterize" in str(w.message))
    assert "anti-aliasing pool" in message


def test_timms_reparameterize_model_folds_the_downsample_conv_and_bn_too():
    model = randomize_bn(_narrow("salient_resnet26")).eval()
    folded = reparameterize_model(copy.deepcopy(model))
    blocks = [m for m in folded.modules() if isinstance(m, FoldedResidualBlock)]
    assert blocks and not any(isinstance(m, nn.BatchNorm2d) for b in blocks for m in b.downsample.modules())
    _close(folded, model, torch.randn(2, 3, 64, 64))


def test_a_frozen_batchnorm_model_folds_with_its_shift():
    """--freeze-bn models: FrozenBatchNorm2d's affine (scale and shift) folds exactly into the convs."""
    from timm.layers import freeze_batch_norm_2d

    model = freeze_batch_norm_2d(randomize_bn(_narrow("salient_resnet18"))).eval()
    _close(reparameterize(model), model, torch.randn(2, 3, 64, 64))


def test_a_blocks_fuse_names_the_slots_it_leaves():
    model = randomize_bn(inject_attention(_narrow("resnet18"), "se")).eval()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.layer1[0].fuse()
    assert any("post SEModule" in str(w.message) for w in caught)


def test_a_torchvision_basic_block_fuses_to_the_same_function():
    import torchvision

    model = randomize_bn(inject_attention(torchvision.models.resnet18(num_classes=5), "salient")).eval()
    block = model.layer2[0]
    x = torch.randn(2, 64, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(block.fuse()(x), block(x), rtol=1e-5, atol=1e-5)


# -- surgery -------------------------------------------------------------------------------------------------------


def test_an_identity_start_that_is_not_exact_is_refused(monkeypatch):
    """The identity check compares values, not shapes: a recipe one ulp off is caught before any block changes."""
    model = _narrow("resnet18")
    real = SalientBlock.init_identity

    def off_by_a_little(self, gain=0.0):
        real(self, gain)
        self.gate.set_scale(2.0 + 1e-6)

    monkeypatch.setattr(SalientBlock, "init_identity", off_by_a_little)
    before = copy.deepcopy(model.state_dict())
    with pytest.raises(SurgeryError, match="did not give an identity attention module"):
        inject_attention(model, "salient", init="identity")
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


@pytest.mark.parametrize("gain", [float("inf"), float("nan"), -0.1])
def test_a_gain_that_is_not_a_finite_number_is_refused(gain):
    with pytest.raises(SurgeryError, match="init_gain must be a finite number >= 0"):
        inject_attention(_narrow("resnet18"), "salient", init="identity", init_gain=gain)


# -- stochastic depth ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["salient_resnet18", "salient_resnet26"])
def test_drop_path_drops_residual_branches_in_training_as_the_literal_gate_does(name):
    """drop_path_rate=0.2: training outputs differ from eval, and the fused gate (with its epilogue) drops the same
    branches as the literal gate under the same random numbers."""
    torch.manual_seed(0)
    fused = _narrow(name, drop_path_rate=0.2)
    literal = _narrow(name, drop_path_rate=0.2, attn_kwargs=dict(impl="conv"))
    randomize_bn(fused)
    literal.load_state_dict(fused.state_dict())
    x = torch.randn(4, 3, 32, 32)
    outs = []
    for model in (fused, literal):
        torch.manual_seed(7)
        outs.append(model.train()(x))
    torch.testing.assert_close(outs[0], outs[1], rtol=1e-5, atol=1e-5)
    with torch.no_grad():
        assert not torch.allclose(outs[0], fused.eval()(x), atol=1e-3)


# -- blocks --------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("make", [lambda: SalientBlock(8, impl="bogus"), lambda: salient_timm.SSABlock(8, impl="sum")])
def test_an_unknown_impl_is_refused_naming_the_valid_ones(make):
    with pytest.raises(salient_timm.SalientError, match="unknown impl .*valid: "):
        make()


# -- counting ------------------------------------------------------------------------------------------------------


def test_addcmul_counts_a_multiply_and_an_add_per_element():
    from salient_analysis.counting import count_cost

    class AddCMul(nn.Module):
        def forward(self, x):
            return torch.addcmul(x, x, x)

    assert count_cost(AddCMul(), (2, 3, 4, 5)).total.elementwise == 2 * 2 * 3 * 4 * 5


# -- maps ----------------------------------------------------------------------------------------------------------


def test_maps_draws_the_last_gate_of_each_stage(tmp_path):
    pytest.importorskip("matplotlib")
    from salient_analysis.maps import draw_maps

    model = _narrow("salient_resnet18").eval()
    x = torch.randn(1, 3, 64, 64)
    _, blocks = draw_maps(model, x, [x[0].permute(1, 2, 0).clamp(0, 1).numpy()], ["x"], str(tmp_path / "m.png"))
    assert blocks == ["layer1.1.se", "layer2.1.se", "layer3.1.se", "layer4.1.se"]


# -- data ----------------------------------------------------------------------------------------------------------


def _items(n=40, seed=0):
    g = torch.Generator().manual_seed(seed)
    images = torch.randint(1, 256, (n, 1, 28, 28), generator=g, dtype=torch.uint8)
    images[:, :, :, :10] = 0  # every item has black pixels (its left columns)
    return images, torch.arange(n) % 10


def test_an_items_black_pixels_let_the_clutter_below_show_through():
    """The item is drawn without its black background: inside its box, where the item is black, clutter stays
    (a box-shaped clutter-free square would give the object's place away)."""
    from salient_timm.data import make_cluttered

    images, labels = _items()
    canvases, _, boxes = make_cluttered(images, labels, clutter=40, seed=3)
    shows = 0
    for canvas, (x0, y0, x1, y1), item in zip(canvases, boxes.tolist(), images):
        inside = canvas[0, y0:y1, x0:x1]
        assert torch.equal(inside[item[0] > 0], item[0][item[0] > 0])
        shows += int((inside[item[0] == 0] > 0).any())
    assert shows > len(images) // 2


def test_centred_items_have_boxes_of_exactly_their_size():
    from salient_timm.data import center_on_canvas

    images, _ = _items(3)
    canvases, boxes = center_on_canvas(images, 64)
    assert boxes.tolist() == [[18, 18, 46, 46]] * 3  # x0, y0, x1, y1: 28 pixels, x1/y1 exclusive
    x0, y0, x1, y1 = boxes[0].tolist()
    assert torch.equal(canvases[0, 0, y0:y1, x0:x1], images[0, 0]) and canvases[0].sum() == images[0].sum()


def test_test_canvases_are_laid_out_apart_from_the_training_ones():
    from salient_timm.data import CLUTTER_SEEDS, make_cluttered

    images, labels = _items()
    train = make_cluttered(images, labels, seed=CLUTTER_SEEDS["train"])
    test = make_cluttered(images, labels, seed=CLUTTER_SEEDS["test"])
    assert CLUTTER_SEEDS["train"] != CLUTTER_SEEDS["test"] and not torch.equal(train[2], test[2])


def test_the_digits_test_split_is_never_augmented():
    pytest.importorskip("sklearn")
    from salient_timm.data import build_datasets

    data = build_datasets("digits", None, 16, augment=True)
    first, again = data.test[0][0], data.test[0][0]
    assert torch.equal(first, again)
    train = [data.train[0][0] for _ in range(4)]
    assert any(not torch.equal(train[0], t) for t in train[1:])  # the training split is augmented


def test_a_model_card_of_a_run_without_history_keeps_its_table_whole(tmp_path):
    """A run stopped before its first epoch has no best row: the table must not get an empty line inside it."""
    from salient_timm.deploy.hub import model_card

    state = {"args": {"dataset": "digits", "img_size": 16, "epochs": 3, "attn": "none"}, "metrics": []}
    state.update(model={}, optimizer={}, scheduler={}, epoch=-1, rng={})
    torch.save(state, tmp_path / "last.pth")
    card = model_card("resnet18", str(tmp_path / "last.pth"))
    table = card[card.index("| trained with |") :].strip().splitlines()
    assert all(line.startswith("|") for line in table) and "| epochs | 0 of 3 |" in table


def _holdout_history():
    """Three epochs where the highest test top-1 (epoch 2) is not the epoch chosen on validation (epoch 3)."""
    return [
        {"epoch": 1, "test_top1": 70.0, "val_top1": 69.0},
        {"epoch": 2, "test_top1": 78.4, "val_top1": 77.9},
        {"epoch": 3, "test_top1": 78.2, "val_top1": 79.2},
    ]


def _checkpoint(path, epoch, history):
    state = {"args": {"dataset": "digits", "img_size": 16, "epochs": 3, "attn": "none"}, "metrics": history}
    state.update(model={}, optimizer={}, scheduler={}, epoch=epoch, rng={})
    torch.save(state, path)
    return state


def test_resume_repair_picks_the_best_epoch_on_validation_as_the_run_did(tmp_path):
    """--holdout runs keep best.pth on validation; a repair judged on test called a sound folder broken
    ("cannot be rebuilt") and left a stale best.pth where the last epoch was the validation best."""
    from salient_timm.io.checkpoint import TrainCheckpoint
    from salient_timm.train.run_folder import best_row, repair

    history = _holdout_history()
    assert best_row(history)["epoch"] == 3 and best_row([dict(h, val_top1=0.0) for h in history])["epoch"] == 1
    assert best_row([{k: v for k, v in h.items() if k != "val_top1"} for h in history])["epoch"] == 2
    last = _checkpoint(tmp_path / "last.pth", 2, history)
    _checkpoint(tmp_path / "best.pth", 1, history[:2])  # killed before best.pth took epoch 3
    last = TrainCheckpoint.from_dict(last)
    assert repair(str(tmp_path), last) == ["best.pth restored from last.pth (epoch 3, the best)"]
    assert torch.load(tmp_path / "best.pth", weights_only=True)["epoch"] == 2
    assert repair(str(tmp_path), last) == []  # a sound folder is left alone


def test_a_model_card_states_the_accuracy_of_the_weights_it_ships(tmp_path):
    from salient_timm.deploy.hub import model_card

    _checkpoint(tmp_path / "best.pth", 2, _holdout_history())
    card = model_card("resnet18", str(tmp_path / "best.pth"))
    assert "| test top-1 | 78.20% (epoch 3, these weights) |" in card
    assert "| validation top-1 | 79.20% (best.pth is chosen on it) |" in card and "78.40" not in card


def test_best_pth_holds_the_epoch_chosen_on_validation_as_the_history_says(tmp_path):
    """A --holdout run keeps best.pth at its best validation epoch, the rule resume's repair and the summary read
    (``run_folder.best_row``); the run loop once kept its own copy of that rule."""
    from salient_timm.io.checkpoint import TrainCheckpoint
    from salient_timm.train.cli import parse_args, run
    from salient_timm.train.run_folder import best_row

    out = tmp_path / "r"
    argv = ["-m", "resnet18", "--dataset", "digits", "--img-size", "16", "--cifar-stem", "--epochs", "4", "--lr", "0.3"]
    summary = run(parse_args([*argv, "--train-subset", "96", "--holdout", "0.25", "--no-progress", "--out", str(out)]))
    history = TrainCheckpoint.read(str(out / "last.pth")).metrics
    best = best_row(history)
    assert best is not None and all("val_top1" in h for h in history)
    assert TrainCheckpoint.read(str(out / "best.pth")).epoch == best["epoch"] - 1
    assert summary["best_epoch"] == best["epoch"]
