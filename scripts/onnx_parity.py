"""ONNX parity of every registered variant and a retrofitted torchvision resnet50 on scikit-image's photos.

    python scripts/onnx_parity.py        # one line per model: max abs difference onnxruntime vs eager

Each model gets random (seeded) weights and a 10-class head, is exported with a dynamic batch at 64 px, and
runs on the astronaut and Chelsea the cat, preprocessed with its timm data config.
"""

import tempfile

import timm
import torch
from PIL import Image

import salient_timm
from salient_timm.deploy.export import export_onnx, onnx_parity


def photos_batch(model: torch.nn.Module, size: int = 64) -> torch.Tensor:
    from skimage import data

    config = timm.data.resolve_data_config({"input_size": (3, size, size)}, model=model)
    transform = timm.data.create_transform(**config)
    return torch.stack(
        [transform(Image.fromarray(getattr(data, n)()).convert("RGB")) for n in ("astronaut", "chelsea")]
    )


def main() -> None:
    specs = [salient_timm.ModelSpec(name, num_classes=10) for name in sorted(salient_timm.VARIANTS)]
    specs.append(salient_timm.ModelSpec("torchvision:resnet50", attn="salient", num_classes=10))
    with tempfile.TemporaryDirectory() as tmp:
        for spec in specs:
            torch.manual_seed(0)
            model = spec.build().eval()
            path = export_onnx(model, f"{tmp}/m.onnx", (3, 64, 64))
            print(f"{spec.label:32s} max abs diff {onnx_parity(model, path, photos_batch(model)):.2e}", flush=True)


if __name__ == "__main__":
    main()
