"""The localization metrics score what they claim: chance for random and constant maps at every map size, the
ceiling for the oracle, the ideal gate near the top and its inverse near the bottom (issue 30)."""

import pytest
import torch

from salient_analysis.localization import (
    LocalizationError,
    baseline_maps,
    box_cover,
    box_share,
    energy_in_box,
    feature_maps,
    pointing_game,
    reference_rows,
)

SIZES = [(16, 16), (8, 8), (4, 4), (2, 2)]


def _boxes(n=3000, canvas=64, item=28, seed=0):
    g = torch.Generator().manual_seed(seed)
    x0 = torch.randint(0, canvas - item + 1, (n,), generator=g)
    y0 = torch.randint(0, canvas - item + 1, (n,), generator=g)
    return torch.stack([x0, y0, x0 + item, y0 + item], 1)


@pytest.mark.parametrize("hw", SIZES)
def test_random_and_constant_maps_score_the_box_share_at_every_map_size(hw):
    boxes = _boxes()
    share = box_share(boxes, 64)
    g = torch.Generator().manual_seed(1)
    constant = torch.full((len(boxes), 1, *hw), 0.3)
    for metric in (pointing_game, energy_in_box):  # 10 draws of 3000 maps: the standard error is about 0.002
        random = [metric(torch.rand(len(boxes), 1, *hw, generator=g), boxes, 64) for _ in range(10)]
        assert sum(random) / 10 == pytest.approx(share, abs=0.01)
        assert metric(constant, boxes, 64) == pytest.approx(share, abs=1e-9)


@pytest.mark.parametrize("hw", SIZES)
def test_the_ideal_gate_scores_the_ceiling_and_its_inverse_near_zero(hw):
    boxes = _boxes(500)
    cover = box_cover(boxes, 64, hw)[:, None]  # 1 on the object, 0 elsewhere, pooled to the map: the oracle
    ceiling = {r["name"]: r for r in reference_rows(boxes, 64, hw)}["ceiling (the box itself)"]
    for metric, key in ((pointing_game, "pointing game"), (energy_in_box, "energy in box")):
        assert metric(cover, boxes, 64) == ceiling[key] > box_share(boxes, 64)
        assert metric(1 - cover, boxes, 64) < 0.1
    if hw == (16, 16):  # a cell fits inside every box: the oracle always points inside
        assert ceiling["pointing game"] == 1.0


def test_the_ceiling_falls_where_no_cell_fits_inside_the_box():
    boxes = _boxes(500)
    ceilings = [{r["name"]: r for r in reference_rows(boxes, 64, hw)}["ceiling (the box itself)"] for hw in SIZES]
    assert [round(c["pointing game"], 2) for c in ceilings][:2] == [1.0, 1.0] and ceilings[-1]["pointing game"] < 0.6


def test_tied_maxima_share_the_point():
    boxes = torch.tensor([[0, 0, 32, 64]])  # the left half of a 64 px canvas
    two_peaks = torch.zeros(1, 1, 2, 2)
    two_peaks[0, 0, 0, 0] = two_peaks[0, 0, 0, 1] = 1.0  # top row: one cell inside, one outside
    assert pointing_game(two_peaks, boxes, 64) == 0.5


def test_a_peak_inside_the_box_scores_one_and_outside_zero():
    boxes = torch.tensor([[8, 8, 24, 24]] * 2)
    maps = torch.zeros(2, 1, 4, 4)
    maps[0, 0, 1, 2] = 1  # cell (row 1, col 2) of a 4x4 map over 32 px: pixels 8..15 x 16..23, inside
    maps[1, 0, 3, 0] = 1  # bottom-left corner: outside
    assert pointing_game(maps[:1], boxes[:1], 32) == 1.0
    assert pointing_game(maps[1:], boxes[1:], 32) == 0.0
    assert pointing_game(maps, boxes, (1, 32, 32)) == 0.5


def test_energy_is_the_mass_above_the_maps_minimum_inside_the_box():
    boxes = torch.tensor([[0, 0, 32, 32]])
    m = torch.zeros(1, 1, 2, 2)
    m[0, 0, 0, 0], m[0, 0, 1, 1] = 3.0, 1.0  # the top-left cell is the box
    assert energy_in_box(m, boxes, 64) == pytest.approx(0.75)
    assert energy_in_box(m + 5.0, boxes, 64) == pytest.approx(0.75)  # a shift changes nothing


def test_baselines_find_a_bright_item_on_black():
    images = torch.zeros(4, 1, 64, 64)
    images[:, :, 4:32, 30:58] = 1.0
    boxes = torch.tensor([[30, 4, 58, 32]] * 4)
    maps = baseline_maps(images, (8, 8))
    assert set(maps) == {"input brightness", "blurred brightness", "centre prior"}
    ceiling = {r["name"]: r for r in reference_rows(boxes, 64, (8, 8))}["ceiling (the box itself)"]
    assert pointing_game(maps["input brightness"], boxes, 64) == 1.0  # a solid item pooled is the box itself
    assert energy_in_box(maps["input brightness"], boxes, 64) == pytest.approx(ceiling["energy in box"])


def test_the_centre_prior_peaks_at_the_centre_of_a_map_that_is_not_square():
    """A 4x6 map (a 64x96 canvas): the four middle cells score highest, the corners lowest, symmetric both ways."""
    prior = baseline_maps(torch.zeros(2, 1, 64, 96), (4, 6))["centre prior"]
    assert prior.shape == (2, 1, 4, 6)
    grid = prior[0, 0]
    top = grid.flatten().topk(4).indices.tolist()
    assert sorted(top) == [1 * 6 + 2, 1 * 6 + 3, 2 * 6 + 2, 2 * 6 + 3]  # rows 1-2, columns 2-3
    torch.testing.assert_close(grid, grid.flip(0))
    torch.testing.assert_close(grid, grid.flip(1))
    assert grid[0, 0] == grid.min() and grid[1, 2] == grid.max()


def test_feature_maps_are_the_channel_mean_of_absolute_activations():
    layer = torch.nn.Conv2d(1, 3, 1, bias=False)
    model = torch.nn.Sequential(layer)
    x = torch.randn(2, 1, 5, 5)
    got = feature_maps(model, x, ["0"])["0"]
    torch.testing.assert_close(got, layer(x).abs().mean(1, keepdim=True).detach())


def test_metrics_refuse_channel_maps_and_misshapen_boxes():
    with pytest.raises(LocalizationError, match=r"\(N, 1, h, w\)"):
        pointing_game(torch.rand(2, 8, 1, 1), torch.zeros(2, 4), 32)
    with pytest.raises(LocalizationError, match=r"boxes must be \(N, 4\)"):
        energy_in_box(torch.rand(2, 1, 4, 4), torch.zeros(3, 4), 32)
