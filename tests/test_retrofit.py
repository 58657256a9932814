"""Retrofitted gates learn: the param groups and near-identity start move the gates of a pretrained model,
where the v0.1 recipe (exact identity, backbone lr and weight decay) leaves them flat."""

import pytest
import timm
import torch
import torchvision
from timm.optim import create_optimizer_v2
from torch import nn

import salient_timm
from salient_analysis.maps import gate_variation
from salient_timm import attention_parameter_names, inject_attention, retrofit_param_groups
from salient_timm.data import build_datasets

# (init_gain, attn_lr_scale, attn_weight_decay)
V01_RECIPE = (0.0, 1.0, 5e-4)


def default_recipe(kind):
    recipe = salient_timm.retrofit_defaults(kind)
    return recipe["init_gain"], recipe["attn_lr_scale"], 0.0


@pytest.fixture(scope="module")
def digits():
    data = build_datasets("digits", None, 16, False)
    train = [data.train[i] for i in range(320)]
    test = torch.stack([data.test[i][0] for i in range(120)])
    return torch.stack([x for x, _ in train]), torch.tensor([y for _, y in train]), test


@pytest.fixture(scope="module")
def pretrained_state(digits):
    """A resnet18 (1-channel stem) trained briefly on digits: the 'pretrained' base every retrofit starts from."""
    torch.manual_seed(0)
    model = timm.create_model("resnet18", num_classes=10, in_chans=1)
    _steps(model, create_optimizer_v2(model, opt="sgd", lr=0.05, momentum=0.9, weight_decay=5e-4), digits, 40)
    return model.state_dict()


def _steps(model, optimizer, digits, n):
    x, y, _ = digits
    model.train()
    gen = torch.Generator().manual_seed(1)
    for _ in range(n):
        i = torch.randint(0, len(y), (32,), generator=gen)
        loss = nn.functional.cross_entropy(model(x[i]), y[i])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()


def _base(library, state):
    if library == "timm":
        model = timm.create_model("resnet18", num_classes=10, in_chans=1)
    else:  # torchvision's resnet18 has timm's keys: the same weights load strictly
        model = torchvision.models.resnet18(num_classes=10)
        model.conv1 = nn.Conv2d(1, 64, 7, 2, 3, bias=False)
    model.load_state_dict(state)
    return model


def _gate_movement(library, kind, recipe, state, digits):
    gain, scale, attn_wd = recipe
    torch.manual_seed(0)
    model = inject_attention(_base(library, state), kind, init="identity", init_gain=gain)
    before = gate_variation(model, [digits[2]])
    groups = retrofit_param_groups(model, 0.02, weight_decay=5e-4, attn_lr_scale=scale, attn_weight_decay=attn_wd)
    _steps(model, create_optimizer_v2(groups, opt="sgd", lr=0.02, momentum=0.9), digits, 12)
    after = gate_variation(model, [digits[2]])
    return before, after


@pytest.mark.parametrize("library", ["timm", "torchvision"])
@pytest.mark.parametrize("kind", ["salient", "ssa", "se"])
def test_default_recipe_moves_retrofit_gates_where_v01_left_them_flat(library, kind, pretrained_state, digits):
    _, flat = _gate_movement(library, kind, V01_RECIPE, pretrained_state, digits)
    before, moved = _gate_movement(library, kind, default_recipe(kind), pretrained_state, digits)
    assert max(v["mean |dev|"] for v in before.values()) < 0.02  # near-identity: the model starts where it was
    spread = lambda rows: sum(v["mean |dev|"] for v in rows.values())  # noqa: E731
    assert spread(moved) > 5 * spread(flat), (spread(moved), spread(flat))
    assert spread(moved) > 0.03


def test_param_groups_cover_every_parameter_once_with_timm_decay_rules():
    model = inject_attention(timm.create_model("resnet18"), "salient", init="identity", init_gain=0.1)
    groups = retrofit_param_groups(model, 0.1, weight_decay=5e-4, attn_lr_scale=30)
    ids = [id(p) for g in groups for p in g["params"]]
    assert sorted(ids) == sorted(id(p) for p in model.parameters())
    named = {id(p): n for n, p in model.named_parameters()}
    attn = set(attention_parameter_names(model))
    assert len(attn) == 8 * 3  # conv weight, BN gamma, BN beta per block
    for g in groups:
        names = {named[id(p)] for p in g["params"]}
        is_attn = names <= attn
        assert is_attn or not names & attn  # no group mixes backbone and attention
        assert g["lr"] == pytest.approx(0.1 * (30 if is_attn else 1)) and "lr_scale" not in g
        if is_attn:
            assert g["weight_decay"] == 0
        elif g["weight_decay"]:
            assert all(not n.endswith("bias") and "bn" not in n for n in names)


def test_timm_scheduler_applies_the_attention_lr_scale_from_the_first_epoch():
    from timm.scheduler import create_scheduler_v2

    model = inject_attention(timm.create_model("resnet18"), "se", init="identity")
    opt = create_optimizer_v2(retrofit_param_groups(model, 0.05, 5e-4, attn_lr_scale=10), opt="sgd", lr=0.05)
    sched, _ = create_scheduler_v2(opt, sched="cosine", num_epochs=4)
    assert sorted({g["lr"] for g in opt.param_groups}) == pytest.approx([0.05, 0.5])
    sched.step(2)
    assert sorted({g["lr"] for g in opt.param_groups}) == pytest.approx([0.025, 0.25])


def test_a_hand_written_torch_loop_trains_the_gates_at_the_scaled_lr_through_a_torch_scheduler():
    """The README's own loop: torch.optim.SGD on the groups, no lr passed to the optimizer, a torch scheduler."""
    model = inject_attention(timm.create_model("resnet18"), "salient", init="identity", init_gain=0.1)
    opt = torch.optim.SGD(retrofit_param_groups(model, 0.01, 5e-4, attn_lr_scale=30), momentum=0.9)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=4)
    for step in range(3):
        lrs = sorted({round(g["lr"], 12) for g in opt.param_groups})
        assert lrs[1] == pytest.approx(30 * lrs[0]) and (step or lrs == pytest.approx([0.01, 0.3]))
        opt.step()
        sched.step()


def test_v01_recipe_equals_timms_own_groups():
    model = inject_attention(timm.create_model("resnet18"), "salient")
    ours = retrofit_param_groups(model, 0.1, 5e-4, attn_lr_scale=1, attn_weight_decay=5e-4)
    theirs = timm.optim.param_groups_weight_decay(model, 5e-4)
    decay = lambda groups: {id(p): g["weight_decay"] for g in groups for p in g["params"]}  # noqa: E731
    assert decay(ours) == decay(theirs)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(attn_lr_scale=-1), "attn_lr_scale must be a finite number >= 0"),
        (dict(attn_weight_decay=float("nan")), "attn_weight_decay must be a finite number >= 0"),
        (dict(lr=float("inf")), "lr must be a finite number >= 0, got inf"),
    ],
)
def test_bad_group_options(kwargs, message):
    model = inject_attention(timm.create_model("resnet18"), "salient")
    with pytest.raises(salient_timm.SalientError, match=message):
        retrofit_param_groups(model, **{"lr": 0.1, **kwargs})


def test_model_without_attention_is_refused():
    with pytest.raises(salient_timm.SalientError, match="no trainable attention parameters"):
        retrofit_param_groups(timm.create_model("resnet18"), 0.1)


@pytest.mark.parametrize("kind", ["salient", "ssa", "se", "eca", "cbam"])
def test_identity_start_is_exact_at_gain_zero_and_near_at_small_gain(kind):
    from helpers import randomize_bn

    base = randomize_bn(timm.create_model("resnet18")).eval()
    x = torch.randn(2, 3, 64, 64)
    expected = base(x)
    exact = inject_attention(randomize_bn(timm.create_model("resnet18")), kind, init="identity")
    exact.load_state_dict(base.state_dict(), strict=False)
    assert torch.equal(exact.eval()(x), expected)
    near = inject_attention(timm.create_model("resnet18"), kind, init="identity", init_gain=0.1)
    near.load_state_dict(base.state_dict(), strict=False)
    assert not torch.equal(near.eval()(x), expected)
    if kind != "ssa":  # SSA's saliency is quadratic in the features: how near its start is depends on their scale
        assert (near(x) - expected).abs().max() < 0.5 * expected.abs().max()


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(init="identity", init_gain=-0.1), "init_gain must be a finite number >= 0"),
        (dict(init="default", init_gain=0.1), "init_gain applies to init='identity' only"),
    ],
)
def test_bad_init_gain_leaves_the_model_untouched(kwargs, message):
    model = timm.create_model("resnet18")
    keys = list(model.state_dict())
    with pytest.raises(salient_timm.SurgeryError, match=message):
        inject_attention(model, "salient", **kwargs)
    assert list(model.state_dict()) == keys


def test_retrofit_defaults_per_kind():
    assert salient_timm.retrofit_defaults("salient") == {"init_gain": 0.1, "attn_lr_scale": 30.0}
    assert salient_timm.retrofit_defaults("se")["attn_lr_scale"] == 100.0
    assert salient_timm.retrofit_defaults("ssa")["init_gain"] == 1.0
    assert salient_timm.retrofit_defaults("cbam") == salient_timm.retrofit_defaults("salient")
