"""Saliency maps: run images through a model, record every gate, summarise and draw them.

Images are read with Pillow and preprocessed with timm's ``create_transform`` from the model's
data config (a salient-train checkpoint carries its input size, channels, mean and std; other
models use their timm pretrained cfg). The figure has one row per image: the input as the model
sees it, then one overlay per stage (its last block's gate) or per block (``all_blocks``): the
gate map upsampled onto the image, with a colour bar and the map's min/mean/max.

Localization, on images with a known object box (``cluttered-fashion-mnist``): ``localization`` scores every
gate, the network's own stage-end features, chance, ceiling and baselines with ``salient_analysis.localization``
(pointing game and energy in box at the map's own resolution).

Statistics are read against each gate's neutral value ``gate(0)`` (0.5 for the seed's sigmoid,
1.0 for an identity-started ``2*sigmoid`` gate): ``mean |dev|`` is how far the gate is from
doing nothing, ``rel std`` (std / mean) how much it modulates the features from pixel to pixel
(or channel to channel for SE), whatever the gate's scale.

| module | what |
|---|---|
| ``io`` | ``load_for_maps`` (model and data config), ``read_images``, ``boxed_test_images`` |
| ``metrics`` | ``gate_stats``, ``gate_variation``, ``localization``, ``stage_ends``, ``stage_blocks`` |
| ``figure`` | ``draw_maps`` |
| ``errors`` | ``MapsError`` |
"""

from ..localization import box_share, energy_in_box, pointing_game  # the metrics' home: salient_analysis.localization
from .errors import MapsError
from .figure import MAX_GATE_COLUMNS, PANEL_INCHES, draw_maps
from .io import BOXED_DATASETS, boxed_test_images, load_for_maps, read_images, with_channels
from .metrics import gate_stats, gate_variation, localization, stage_blocks, stage_ends

__all__ = [
    "PANEL_INCHES",
    "MAX_GATE_COLUMNS",
    "BOXED_DATASETS",
    "load_for_maps",
    "with_channels",
    "read_images",
    "boxed_test_images",
    "gate_stats",
    "gate_variation",
    "stage_blocks",
    "stage_ends",
    "localization",
    "draw_maps",
    "MapsError",
    "pointing_game",
    "energy_in_box",
    "box_share",
]
