"""Old import paths keep working for one release: each warns once, naming the new home, and gives the same objects."""

import importlib
import sys
from pathlib import Path

import pytest

MOVED = [  # (old module, the new home the warning names, a name, the module it now lives in)
    ("salient_timm.train.data", "salient_timm.data", "make_cluttered", "salient_timm.data.datasets"),
    (
        "salient_timm.slots",
        "salient_timm.surgery.families",
        "TimmBottleneckSlots",
        "salient_timm.surgery.families.resnet",
    ),
    ("salient_timm.folding", "salient_timm.deploy.fold", "fold_residual_block", "salient_timm.deploy.fold"),
    (
        "salient_timm.reparam",
        "salient_timm.deploy.reparameterize",
        "reparameterize",
        "salient_timm.deploy.reparameterize",
    ),
    ("salient_timm.export", "salient_timm.deploy.export", "export_onnx", "salient_timm.deploy.export"),
    ("salient_timm.export", "salient_timm.deploy.hub", "save_hf_folder", "salient_timm.deploy.hub"),
    ("salient_timm.salient_resnet", "salient_timm.models", "VARIANTS", "salient_timm.models.salient_resnet"),
    ("salient_timm.salient_resnet", "salient_timm.models", "fill_attention_keys", "salient_timm.models._filter"),
    (
        "salient_timm.retrofit_arch",
        "salient_timm.models.salient_retrofit",
        "salient_retrofit",
        "salient_timm.models.salient_retrofit",
    ),
    ("salient_timm.retrofit_record", "salient_timm.surgery", "record_retrofit", "salient_timm.surgery.record"),
    ("salient_timm.retrofit", "salient_timm.optim", "retrofit_param_groups", "salient_timm.optim"),
    ("salient_timm.blocks", "salient_timm.layers.salient", "SalientBlock", "salient_timm.layers.salient"),
    ("salient_timm.fused", "salient_timm.layers._fused_gate", "spatial_gate", "salient_timm.layers._fused_gate"),
    ("salient_timm.kinds", "salient_timm.layers.create_attn", "resolve_attention", "salient_timm.layers.create_attn"),
    ("salient_timm.kinds", "salient_timm.layers.identity", "init_identity", "salient_timm.layers.identity"),
    ("salient_timm.weights", "salient_timm.io.weights", "read_state_dict", "salient_timm.io.weights"),
]


@pytest.mark.parametrize("old, new_home, name, module", MOVED, ids=[f"{m[0]}.{m[2]}" for m in MOVED])
def test_an_old_import_path_warns_and_gives_the_same_objects(old, new_home, name, module):
    sys.modules.pop(old, None)
    with pytest.warns(DeprecationWarning, match=new_home.replace(".", r"\.")):
        legacy = importlib.import_module(old)
    new_name = {"fill_attention_keys": "checkpoint_filter_fn"}.get(name, name)
    assert getattr(legacy, name) is getattr(importlib.import_module(module), new_name)
    assert name in legacy.__all__


def test_the_warning_points_at_the_users_import_line_and_unknown_names_say_which_module():
    sys.modules.pop("salient_timm.kinds", None)
    with pytest.warns(DeprecationWarning) as record:
        __import__("salient_timm.kinds")  # a plain import statement, as in a user's script
    assert [Path(w.filename).name for w in record] == [Path(__file__).name]  # -W filters by module work
    with pytest.raises(AttributeError, match="'salient_timm.kinds' has no attribute 'no_such_name'"):
        _ = sys.modules["salient_timm.kinds"].no_such_name
