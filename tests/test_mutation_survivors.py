"""Behaviours that the sampled mutation check (scripts/mutation_sample.py, results/mutation.md) found unpinned:
each test fails on the survivor it names and describes what a user would get wrong."""

import pytest
import timm
import torch
from PIL import Image
from torch import nn
from torch.nn import functional as F

from salient_analysis.counting import count_cost
from salient_timm import SalientBlock, SSABlock, SurgeryError, attention_modules, find_residual_blocks, inject_attention
from salient_timm.data import DatasetError, build_datasets, make_cluttered
from salient_timm.layers import ConstantGate


def test_ssa_map_is_the_channel_mean_of_the_pooled_descriptor_times_x_in_every_impl():
    """SSA's map, written out: s[n,h,w] = mean_c(mean_hw(x)[n,c] * x[n,c,h,w]). Every impl against the hand
    formula (a wrong pooling axis or a divide in the plain path changed both sides of the fused-vs-plain tests)."""
    torch.manual_seed(0)
    x = torch.randn(2, 6, 5, 7, dtype=torch.float64)
    pooled = x.sum((2, 3)) / (5 * 7)  # (N, C)
    by_hand = torch.einsum("nc,nchw->nhw", pooled, x)[:, None] / 6
    for impl in ("mean", "fused", "gemv"):
        block = SSABlock(6, impl=impl).double()
        torch.testing.assert_close(block.saliency(x), by_hand, msg=impl)


def test_the_constant_gate_scales_every_pixel_of_every_image_by_its_one_learned_factor():
    gate = ConstantGate(4)
    with torch.no_grad():
        gate.logit.fill_(0.7)
    x = torch.randn(3, 4, 5, 5)  # a batch of 3: one shared factor, not one per image
    torch.testing.assert_close(gate(x), x * torch.sigmoid(torch.tensor(0.7)))
    assert sum(p.numel() for p in gate.parameters()) == 1
    gate.init_identity()
    torch.testing.assert_close(gate(x), x)


def test_pooling_counts_one_op_per_window_element_for_int_and_tuple_kernels():
    """max and average pooling: output elements x window size, the window given as an int or as a tuple."""
    model = nn.Sequential(nn.MaxPool2d(3, stride=2, padding=1), nn.AvgPool2d((2, 3)))
    cost = count_cost(model, (1, 2, 16, 18))
    first = 2 * 8 * 9  # the max pool's output elements
    second = 2 * 4 * 3  # the average pool's (8x9 -> 4x3 with a 2x3 window)
    assert cost.module("0").elementwise == first * 9
    assert cost.module("1").elementwise == second * 6

    class OneElementKernel(nn.Module):  # aten receives kernel_size [3]: a square 3x3 window
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return F.avg_pool2d(x, [3], stride=[1])

    assert count_cost(OneElementKernel(), (1, 2, 8, 8)).total.elementwise == 2 * 6 * 6 * 9


def test_a_container_that_is_never_called_sums_its_childrens_counts_op_by_op():
    """HRNet's ``transition1`` (a ModuleList of branches) is reported as the sum of what its branches did."""

    class Branches(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.paths = nn.ModuleList([nn.Sequential(nn.Conv2d(2, 2, 1), nn.ReLU()) for _ in range(2)])

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.paths[0](x) + self.paths[1](x)

    cost = count_cost(Branches(), (1, 2, 4, 4))
    children = [cost.module(f"paths.{i}") for i in range(2)]
    whole = cost.module("paths")
    assert whole.macs == sum(c.macs for c in children) > 0
    assert whole.by_op == {op: sum(c.by_op.get(op, 0) for c in children) for op in children[0].by_op}
    assert all(n > 0 for n in whole.by_op.values())


def test_residual_stages_are_numbered_from_one_in_module_order():
    """``--attn-stages 1`` means a ResNet's layer1: the numbers users type are the ones surgery gives."""
    with torch.device("meta"):
        model = timm.create_model("resnet18")
    assert [b.stage for b in find_residual_blocks(model)] == [1, 1, 2, 2, 3, 3, 4, 4]


def test_clutter_reaches_every_position_of_the_canvas_edges():
    """Clutter patches are placed anywhere the patch fits, the last row and column included, not one short."""
    items = torch.full((400, 1, 8, 8), 255, dtype=torch.uint8)  # solid items: every clutter patch is lit
    canvases, _, boxes = make_cluttered(items, torch.zeros(400, dtype=torch.long), canvas=24, clutter=4, patch=4)
    outside = torch.ones_like(canvases, dtype=torch.bool)
    for i, (x0, y0, x1, y1) in enumerate(boxes.tolist()):
        outside[i, 0, y0:y1, x0:x1] = False  # the item's own pixels
    lit = (canvases > 0) & outside  # clutter only
    assert lit[:, 0, :, -1].any() and lit[:, 0, -1, :].any()  # the last column and row
    assert lit[:, 0, :, 0].any() and lit[:, 0, 0, :].any()


def test_an_image_folder_whose_test_classes_differ_from_its_training_classes_is_refused(tmp_path):
    """Class indices would silently mean different things in training and test: refuse, naming the folders."""
    for split, names in (("train", ("cat", "dog")), ("val", ("cat", "fox"))):
        for name in names:
            (tmp_path / split / name).mkdir(parents=True)
            Image.new("RGB", (8, 8), (200, 10, 10)).save(tmp_path / split / name / "a.png")
    try:
        build_datasets("imagefolder", str(tmp_path), 8, augment=False)
    except DatasetError as e:
        assert "train/ and val/ have different class folders" in str(e)
    else:
        raise AssertionError("an image folder with other test classes was accepted")


class StridedNorm(nn.Module):
    """A per-channel affine norm whose output is neither contiguous nor channels_last (H and W strides swapped):
    a layout the fused gate must not read as contiguous."""

    def __init__(self, num_features: int, **factory) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.linspace(0.5, 1.5, num_features, **factory))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x * self.weight[:, None, None]).transpose(2, 3).contiguous().transpose(2, 3)


def test_the_fused_gate_after_a_norm_of_any_output_layout_equals_the_literal_gate():
    from salient_timm import inject_attention

    torch.manual_seed(0)
    models = []
    for impl in ("fused", "conv"):
        torch.manual_seed(0)
        model = timm.create_model("resnet18", norm_layer=StridedNorm, num_classes=3).double()
        inject_attention(model, "salient", impl=impl)
        models.append(model.train())
    models[1].load_state_dict(models[0].state_dict())
    x = torch.randn(2, 3, 64, 96, dtype=torch.float64)
    y = models[0].bn1(torch.randn(1, 64, 4, 6, dtype=torch.float64))
    assert not (y.is_contiguous() or y.is_contiguous(memory_format=torch.channels_last))
    outs = [m(x) for m in models]
    torch.testing.assert_close(outs[0], outs[1])
    grads = [torch.autograd.grad(o.square().sum(), list(m.parameters())) for o, m in zip(outs, models)]
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b)


def test_a_conv_counts_its_multiply_adds_by_hand():
    """count_cost's MACs of a conv and a linear layer: output elements x (in-channels x window), and in x out."""
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.Flatten(), nn.Linear(8 * 8 * 8, 5))
    cost = count_cost(model, (1, 3, 10, 10))
    assert cost.module("0").macs == 8 * 8 * 8 * 3 * 3 * 3
    assert cost.module("2").macs == 8 * 8 * 8 * 5


def test_items_are_placed_anywhere_they_fit_the_last_column_and_row_included():
    """An odd free range (canvas 25 - item 8 = 17): the item's box reaches x0 = 17 and y0 = 17."""
    items = torch.full((600, 1, 8, 8), 255, dtype=torch.uint8)
    _, _, boxes = make_cluttered(items, torch.zeros(600, dtype=torch.long), canvas=25, clutter=0, patch=4)
    assert int(boxes[:, 0].max()) == 17 and int(boxes[:, 1].max()) == 17
    assert int(boxes[:, 0].min()) == 0 and int(boxes[:, 1].min()) == 0


def test_a_canvas_narrower_than_tall_thin_items_is_refused_naming_their_size():
    items = torch.zeros(2, 1, 12, 8, dtype=torch.uint8)  # 12 high, 8 wide
    try:
        make_cluttered(items, torch.zeros(2, dtype=torch.long), canvas=10, clutter=0, patch=4)
    except DatasetError as e:
        assert "smaller than the 12x8 items" in str(e)
    else:
        raise AssertionError("a 10 px canvas took 12 px high items")


def test_a_stratified_subset_follows_the_class_shares_and_covers_every_class():
    """60 % class 0, 30 % class 1, 10 % class 2: a 20-item subset takes 12, 6 and 2, each class at least once."""
    from salient_timm.data import stratified_indices

    labels = torch.tensor([0] * 60 + [1] * 30 + [2] * 10)
    taken = labels[stratified_indices(labels, 20)]
    assert torch.bincount(taken, minlength=3).tolist() == [12, 6, 2]
    rare = torch.tensor([0] * 98 + [1, 2])
    assert torch.bincount(rare[stratified_indices(rare, 7)], minlength=3).tolist() == [5, 1, 1]
    halves = torch.tensor([0] * 3 + [1] * 7)  # quotas 1.5 and 3.5: the remainder goes to a class with room
    got = torch.bincount(halves[stratified_indices(halves, 5)], minlength=2)
    assert int(got.sum()) == 5 and bool(((got - torch.tensor([1.5, 3.5])).abs() < 1).all())


def test_a_holdout_may_leave_one_training_item_but_not_none():
    from salient_timm.data import hold_out

    data = build_datasets("digits", None, 8, augment=False)
    n = len(data.train)
    kept = hold_out(data, (n - 1) / n)
    assert (len(kept.train), len(kept.val)) == (1, n - 1)
    try:
        hold_out(build_datasets("digits", None, 8, augment=False), 1.0)
    except DatasetError as e:
        assert "leaves no training items" in str(e)
    else:
        raise AssertionError("a holdout of every item was accepted")


def test_blurred_brightness_of_a_point_is_a_symmetric_bell_that_falls_off_with_distance():
    """The blur baseline is a Gaussian: a single bright pixel spreads into a peak that decreases monotonically
    and symmetrically away from it (a kernel that is not a bell, e.g. exp(-t % 2), rises again)."""
    from salient_analysis.localization import baseline_maps

    images = torch.zeros(1, 1, 64, 64)
    images[0, 0, 31:33, 31:33] = 1.0  # the centre 2x2 pixels
    blurred = baseline_maps(images, (16, 16))["blurred brightness"][0, 0]
    row = blurred[7, :8]  # from the left edge to the centre cell: 0 beyond the kernel's 3 sigma, then rising
    assert bool((row[1:] >= row[:-1]).all()) and bool((row[5:] > row[4:-1]).all()) and row[4] > 0
    # sigma is 4 pixels here and the kernel stops at 3 sigma (12 pixels): cells 0-3 (pixels 0-15) get nothing
    assert bool((row[:4] == 0).all()), row
    torch.testing.assert_close(blurred, blurred.flip(0))
    torch.testing.assert_close(blurred, blurred.flip(1))


def test_an_unhooked_training_forward_keeps_less_for_backward_than_the_literal_gate():
    """The fused gate's promise to a trainer: it keeps x (and the (N, 1, H, W) maps) for backward, where the
    literal ops keep their full-size intermediates too. A fused path that silently stopped applying would keep
    the same outputs and lose this."""
    from salient_timm import SalientBlock

    def saved_bytes(impl: str) -> int:
        torch.manual_seed(0)
        block = SalientBlock(16, impl=impl).train()
        x = torch.randn(4, 16, 12, 12, requires_grad=True)
        total = 0

        def pack(t: torch.Tensor) -> torch.Tensor:
            nonlocal total
            total += t.numel() * t.element_size()
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            block(x).sum().backward()
        return total

    assert saved_bytes("fused") < saved_bytes("conv")


def test_the_identity_check_leaves_the_new_gates_batchnorm_statistics_untouched():
    """inject_attention(init="identity") probes each new module once to prove the identity; the probe must not
    train it: its BatchNorm statistics stay the fresh ones (a probe in training mode moved them)."""
    for kind in ("salient", "ssa"):
        model = timm.create_model("resnet18", num_classes=3)
        inject_attention(model, kind, init="identity")
        for name, module in attention_modules(model):
            for bn in (m for m in module.modules() if isinstance(m, nn.BatchNorm2d)):
                assert int(bn.num_batches_tracked) == 0, f"{kind} {name}"
                assert torch.equal(bn.running_mean, torch.zeros_like(bn.running_mean)), f"{kind} {name}"
                assert torch.equal(bn.running_var, torch.ones_like(bn.running_var)), f"{kind} {name}"


def test_more_stage_flags_than_stages_are_refused():
    model = timm.create_model("resnet18")
    with pytest.raises(SurgeryError, match="5 flags for a model with 4 stages"):
        inject_attention(model, "salient", stages=(True, True, True, True, False))
    assert attention_modules(model) == []  # refused before any change


def test_flops_are_two_per_mac_plus_the_elementwise_ops():
    """A linear layer and a ReLU, by hand: 2 x 3 x 4 = 24 MACs, 2 x 4 = 8 ReLU outputs, so 56 FLOPs."""
    model = nn.Sequential(nn.Linear(3, 4, bias=False), nn.ReLU())
    total = count_cost(model, (2, 3)).total
    assert (total.macs, total.elementwise, total.flops) == (24, 8, 56)


def test_a_frozen_model_runs_under_vmap_with_grad_mode_on():
    """torch.func.vmap over a model whose parameters are frozen (nothing requires grad, grad mode on): the gate
    takes the plain ops, which vmap supports, and gives each item's own output."""
    torch.manual_seed(0)
    model = timm.create_model("salient_resnet18", num_classes=4).eval().requires_grad_(False)
    x = torch.randn(3, 2, 3, 32, 32)
    out = torch.func.vmap(model)(x)
    torch.testing.assert_close(out, torch.stack([model(item) for item in x]), rtol=1e-4, atol=1e-5)


class _AtenOps(torch.utils._python_dispatch.TorchDispatchMode):
    """The aten ops a call runs, by name (``bmm``, ``convolution``...)."""

    def __init__(self) -> None:
        super().__init__()
        self.names: set = set()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.names.add(func.overloadpacket.__name__)
        return func(*args, **(kwargs or {}))


GEMM = {"bmm", "mm", "addmm", "baddbmm"}


@pytest.mark.parametrize(
    "impl, runs, never",
    [
        ("sum", {"mul", "sum"}, GEMM | {"convolution"}),
        ("gemv", set(), {"convolution"}),
        ("conv", {"convolution"}, GEMM),
    ],
)
def test_each_impl_runs_the_ops_its_name_promises_however_the_name_was_read(impl, runs, never):
    """An impl named in a config file or on the command line is a string built at run time, not the interned literal:
    ``impl="sum"`` must still run the pointwise multiply and channel sum that torch.compile fuses (not a GEMM call),
    ``"gemv"`` a GEMV, ``"conv"`` the seed's conv."""
    name = "".join(list(impl))  # a new str object equal to the literal, as json.loads or click would give
    assert name == impl and name is not impl
    block = SalientBlock(8, impl=name).eval()
    x = torch.randn(2, 8, 5, 5)
    with torch.no_grad(), _AtenOps() as ops:
        block(x)
    assert runs <= ops.names, f"{impl}: ran {sorted(ops.names)}"
    assert not never & ops.names, f"{impl}: ran {sorted(ops.names)}"
    assert impl != "gemv" or GEMM & ops.names, f"{impl}: ran {sorted(ops.names)}"


@pytest.mark.parametrize("source", ["timm", "torchvision"])
def test_a_conv_with_a_bias_folds_into_a_frozen_batchnorm_exactly(source):
    """``--freeze-bn`` (timm) and torchvision's detection backbones use FrozenBatchNorm2d; a conv with its own bias
    before one (a custom ResNet's convs) folds its bias through the norm's scale, then adds the shift."""
    from timm.layers import freeze_batch_norm_2d
    from torchvision.ops.misc import FrozenBatchNorm2d

    from salient_timm.deploy.fold import fold_conv_bn

    torch.manual_seed(0)
    conv = nn.Conv2d(3, 4, 3, padding=1, bias=True).double().eval()
    bn = nn.BatchNorm2d(4).double().eval()
    with torch.no_grad():
        bn.weight.uniform_(0.5, 2.0)
        bn.bias.normal_()
        bn.running_mean.normal_()
        bn.running_var.uniform_(0.5, 2.0)
    if source == "timm":
        frozen = freeze_batch_norm_2d(bn)
    else:
        frozen = FrozenBatchNorm2d(4, eps=bn.eps).double()
        for key in ("weight", "bias", "running_mean", "running_var"):
            getattr(frozen, key).copy_(getattr(bn, key))
    assert type(frozen).__name__ == "FrozenBatchNorm2d"
    folded = fold_conv_bn(conv, frozen)
    assert folded is not None
    x = torch.randn(2, 3, 6, 6, dtype=torch.float64)
    torch.testing.assert_close(folded(x), frozen(conv(x)))
    torch.testing.assert_close(folded(x), bn(conv(x)))


def test_a_box_covers_the_cells_of_a_map_wider_than_tall():
    """A 32 x 64 input (h x w) seen as a 2 x 4 map: a box over its left half covers the two left columns fully."""
    from salient_analysis.localization import box_cover

    cover = box_cover(torch.tensor([[0, 0, 32, 32]]), (32, 64), (2, 4))
    expected = torch.tensor([[[1.0, 1.0, 0.0, 0.0], [1.0, 1.0, 0.0, 0.0]]], dtype=torch.float64)
    torch.testing.assert_close(cover, expected)
    quarter = box_cover(torch.tensor([[16, 8, 48, 24]]), (32, 64), (2, 4))  # rows 8-24, columns 16-48
    torch.testing.assert_close(quarter, torch.tensor([[[0.0, 0.5, 0.5, 0.0], [0.0, 0.5, 0.5, 0.0]]]).double())


def test_each_clutter_piece_is_an_unbroken_square_cut_from_another_item():
    """Every pixel of an item is unique here (item, row, column encoded in its value), so a clutter piece on the
    canvas must be a translated copy of a patch x patch window of one other item: each canvas pixel outside the
    item's box sits at the same offset from its source pixel as the piece's other pixels."""
    n, size, patch = 3, 8, 4
    values = torch.arange(1, n * size * size + 1).view(n, 1, size, size)  # 1..192: no black pixel, all distinct
    canvases, _, boxes = make_cluttered(values.to(torch.uint8), torch.arange(n), canvas=40, clutter=1, patch=patch)
    for canvas, box, own in zip(canvases[:, 0], boxes, range(n)):
        offsets = set()
        for y, x in (canvas > 0).nonzero().tolist():
            if box[0] <= x < box[2] and box[1] <= y < box[3]:
                continue  # the item itself
            source, rest = divmod(int(canvas[y, x]) - 1, size * size)
            assert source != own, "a clutter piece cut from the item itself"
            offsets.add((source, y - rest // size, x - rest % size))
        assert len(offsets) == 1, f"the clutter piece is not one translated window: {sorted(offsets)}"


@pytest.mark.parametrize(
    "content", [{"labels": [0]}, b"not a pickle", "truncated"], ids=["missing-key", "garbage", "truncated"]
)
def test_an_unreadable_cifar_folder_is_one_dataset_error_naming_the_folder(tmp_path, content):
    """A CIFAR batch file that is not what torchvision expects (a pickle without its keys, garbage, a cut-off
    download) gives salient-train's one-line data error, not a traceback from inside torchvision."""
    import pickle

    from fixture_data import write_fake_cifar

    root = write_fake_cifar(tmp_path / "data", 10, train=10, test=5)
    batch = root / "cifar-10-batches-py" / "data_batch_1"
    if content == "truncated":
        batch.write_bytes(batch.read_bytes()[:100])
    elif isinstance(content, bytes):
        batch.write_bytes(content)
    else:
        batch.write_bytes(pickle.dumps(content))
    with pytest.raises(DatasetError, match="unreadable under"):
        build_datasets("cifar10", str(root), 32, augment=False)


def test_a_model_without_residual_blocks_is_refused_naming_every_supported_family():
    """The refusal is where a user learns what "any ResNet" covers: every timm family of the adapter table."""
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU())
    with pytest.raises(SurgeryError) as refused:
        inject_attention(model, "salient")
    message = str(refused.value)
    families = ["byobnet", "cspnet", "dla", "nfnet", "regnet", "res2net", "resnest", "resnetv2", "senet", "sknet"]
    for family in families + ["tresnet", "resnet models", "torchvision's resnets"]:
        assert family in message, family
    assert list(model.modules())[1:] == [model[0], model[1]]  # refused before any change


def test_the_blur_baseline_is_one_cell_wide_along_x_on_a_map_wider_than_tall():
    """sigma is one cell on each axis: a point blurred on a 64 x 128 input seen as a 4 x 8 map spreads along x over
    the cells exactly as on a 128 x 128 input seen as 8 x 8 (the same 16 px cells; the blur is separable)."""
    from salient_analysis.localization import baseline_maps

    def x_profile(height: int, map_rows: int) -> torch.Tensor:
        images = torch.zeros(1, 1, height, 128)
        images[0, 0, height // 2 - 1 : height // 2 + 1, 63:65] = 1.0
        blurred = baseline_maps(images, (map_rows, 8))["blurred brightness"][0, 0]
        row = blurred[map_rows // 2 - 1]
        return row / row.sum()

    wide, square = x_profile(64, 4), x_profile(128, 8)
    assert bool((wide > 0).all()), wide  # 3 sigma = 3 cells: the point's blur reaches the first and last cells
    torch.testing.assert_close(wide, square)


@pytest.mark.parametrize("shape", [(2, 1, 4, 4, 1), (2, 4, 4), (2, 3, 4, 4)], ids=["5-D", "3-D", "3 channels"])
def test_maps_that_are_not_one_channel_4d_are_refused_by_every_metric(shape):
    """A map with an extra trailing axis (a stack of maps, a stray unsqueeze) would be scored as something else."""
    from salient_analysis.localization import LocalizationError, energy_in_box, pointing_game

    boxes = torch.tensor([[0, 0, 8, 8], [8, 8, 16, 16]])
    for metric in (pointing_game, energy_in_box):
        with pytest.raises(LocalizationError, match=r"\(N, 1, h, w\)"):
            metric(torch.rand(shape), boxes, 16)


def test_an_idx_file_with_more_values_than_its_header_is_refused_by_name(tmp_path):
    """A Fashion-MNIST file whose body does not match its header (appended, or cut off) is one DatasetError, not a
    reshape error from numpy."""
    from salient_timm.data.datasets import read_idx

    header = bytes([0, 0, 8, 3]) + (2).to_bytes(4, "big") + (3).to_bytes(4, "big") + (3).to_bytes(4, "big")
    good = tmp_path / "good-idx3-ubyte"
    good.write_bytes(header + bytes(range(18)))
    assert read_idx(str(good)).shape == (2, 3, 3)
    for name, body in (("long", bytes(range(20))), ("short", bytes(range(17)))):
        bad = tmp_path / f"{name}-idx3-ubyte"
        bad.write_bytes(header + body)
        with pytest.raises(DatasetError, match=f"header says \\[2, 3, 3\\], file holds {len(body)} values"):
            read_idx(str(bad))


def test_digits_are_scaled_from_their_17_levels_onto_the_full_0_255_range():
    """scikit-learn's digits hold levels 0-16; as 8-bit images they span 0-255, so the recorded normalisation is the
    levels' own mean and spread over 16 (0.305 and 0.376 on the training split)."""
    sklearn_datasets = pytest.importorskip("sklearn.datasets")

    data = build_datasets("digits", None, 8, augment=False)
    levels = sklearn_datasets.load_digits().images / 16
    assert abs(data.mean[0] - levels.mean()) < 0.005 and abs(data.std[0] - levels.std()) < 0.005


def test_cifar_is_normalised_with_the_cifar10_training_statistics(tmp_path):
    """The seed's CIFAR recipe normalises with CIFAR-10's per-channel training mean and std (0.4914, 0.4822,
    0.4465) / (0.2470, 0.2435, 0.2616), and records them, so an exported model's preprocessing is the one trained."""
    from fixture_data import write_fake_cifar

    data = build_datasets("cifar10", str(write_fake_cifar(tmp_path / "data", 10, train=10, test=5)), 32, False)
    assert data.mean == pytest.approx((0.4914, 0.4822, 0.4465)) and data.std == pytest.approx((0.2470, 0.2435, 0.2616))
    assert tuple(data.eval_config["mean"]) == pytest.approx(data.mean)
    image, _ = data.test[0]
    raw = torch.tensor(data.test.data[0]).permute(2, 0, 1).float() / 255  # the stored HWC uint8 image
    expected = (raw - torch.tensor(data.mean).view(3, 1, 1)) / torch.tensor(data.std).view(3, 1, 1)
    torch.testing.assert_close(image, expected)


def test_make_cluttered_takes_its_arguments_by_name():
    """Every argument by name, as the docs show; the layout options only by name (no positional canvas)."""
    items = torch.randint(1, 255, (3, 1, 8, 8), dtype=torch.uint8)
    canvases, labels, boxes = make_cluttered(images=items, labels=torch.arange(3), canvas=20, clutter=0)
    assert canvases.shape == (3, 1, 20, 20) and boxes.shape == (3, 4)
    with pytest.raises(TypeError):
        make_cluttered(items, torch.arange(3), 20)  # type: ignore[misc]
