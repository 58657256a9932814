"""Small real-image stand-ins in each data set's own file format, so tests never download or need Fashion-MNIST.

| writer | format | images |
|---|---|---|
| ``write_idx`` | one MNIST idx file (``.gz``) | any uint8 array |
| ``digits_as_fashion_mnist`` | the four Fashion-MNIST idx files | scikit-learn's digits at 28x28 |
| ``write_fake_cifar`` | torchvision's ``cifar-10-batches-py`` / ``cifar-100-python`` pickles | random pixels |
| ``digits_imagefolder`` | ``train/<class>/*.png`` and ``val/<class>/*.png`` | scikit-learn's digits, RGB |
| ``sample_photos`` | image files | scikit-image's sample photos |
| ``photo_imagefolder`` | ``train/<class>/*.jpg``, ``val/<class>/*.jpg`` | crops of 3 scikit-image photos |
"""

import gzip
import pickle
from pathlib import Path
from typing import Dict, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image


def write_idx(path: Path, array: np.ndarray) -> None:
    """An unsigned-byte idx file (the MNIST format), gzip-compressed."""
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + np.asarray(array).astype(np.uint8).tobytes())


def digits_as_fashion_mnist(folder: Path, brighter_test: bool = False) -> Path:
    """scikit-learn's digits as 28x28 Fashion-MNIST idx files (train 1437, test 360, a fixed shuffle).

    With ``brighter_test`` every test item is brighter (>= 201) than any train item can be (<= 200), so a test
    can tell which split a canvas was built from."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    items = F.interpolate(torch.tensor(digits.images, dtype=torch.float32)[:, None], size=(24, 24), mode="nearest")
    items = F.pad(items, (2, 2, 2, 2))[:, 0] / 16.0  # 28x28 with a black border, 0..1
    folder.mkdir(parents=True, exist_ok=True)
    order = np.random.default_rng(0).permutation(len(items))
    train, test = order[:1437], order[1437:]
    write_idx(folder / "train-images-idx3-ubyte.gz", (items[train] * 200).round().numpy())
    write_idx(folder / "train-labels-idx1-ubyte.gz", digits.target[train])
    test_items = torch.where(items[test] > 0, 201 + items[test] * 54, 0) if brighter_test else items[test] * 200
    write_idx(folder / "t10k-images-idx3-ubyte.gz", test_items.round().numpy())
    write_idx(folder / "t10k-labels-idx1-ubyte.gz", digits.target[test])
    return folder


def write_fake_cifar(root: Path, classes: int, train: int = 120, test: int = 30) -> Path:
    """A torchvision CIFAR-10 (``classes=10``) or CIFAR-100 folder under ``root`` with random 32x32 images."""
    rng = np.random.default_rng(0)

    def batch(n: int) -> tuple:
        return rng.integers(0, 256, (n, 3072), dtype=np.uint8), rng.integers(0, classes, n).tolist()

    if classes == 10:
        folder = root / "cifar-10-batches-py"
        folder.mkdir(parents=True)
        per_batch = max(1, train // 5)
        for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
            data, labels = batch(test if name == "test_batch" else per_batch)
            (folder / name).write_bytes(pickle.dumps({"data": data, "labels": labels}))
        (folder / "batches.meta").write_bytes(pickle.dumps({"label_names": [f"c{i}" for i in range(10)]}))
    else:
        folder = root / "cifar-100-python"
        folder.mkdir(parents=True)
        for name, n in (("train", train), ("test", test)):
            data, labels = batch(n)
            (folder / name).write_bytes(pickle.dumps({"data": data, "fine_labels": labels}))
        (folder / "meta").write_bytes(pickle.dumps({"fine_label_names": [f"c{i}" for i in range(classes)]}))
    return root


def digits_imagefolder(root: Path, classes: Sequence[int] = (0, 1, 2), train: int = 24, val: int = 4) -> Path:
    """An image folder (``train/``, ``val/``, one sub-folder per class) of scikit-learn's digits as 32x32 RGB PNGs."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    for c in classes:
        images = digits.images[digits.target == c][: train + val]
        for i, image in enumerate(images):
            split = "train" if i < train else "val"
            (root / split / f"digit{c}").mkdir(parents=True, exist_ok=True)
            pixels = (np.kron(image, np.ones((4, 4))) * 255 / 16).astype(np.uint8)
            Image.fromarray(pixels).convert("RGB").save(root / split / f"digit{c}" / f"{i}.png")
    return root


def photo_imagefolder(root: Path, train: int = 6, val: int = 4, size: int = 96) -> Path:
    """An image folder of scikit-image's photos, one class per photo (``cat``, ``coffee``, ``rocket``), each image a
    random ``size`` x ``size``-ish crop of its photo (fixed seed): classes sorted as timm's ImageFolder sorts them."""
    from skimage import data

    rng = np.random.default_rng(0)
    for name, photo in (("cat", "chelsea"), ("coffee", "coffee"), ("rocket", "rocket")):
        pixels = getattr(data, photo)()
        for i in range(train + val):
            split = "train" if i < train else "val"
            side = int(rng.integers(size, min(pixels.shape[:2])))
            y, x = (int(rng.integers(0, n - side + 1)) for n in pixels.shape[:2])
            (root / split / name).mkdir(parents=True, exist_ok=True)
            crop = Image.fromarray(pixels[y : y + side, x : x + side]).convert("RGB")
            crop.resize((size + i * 7, size)).save(root / split / name / f"{i}.jpg")
    return root


def sample_photos(folder: Path, names: Dict[str, str]) -> Path:
    """scikit-image's sample photos written under ``folder``: ``{file name: skimage.data name}``."""
    from skimage import data

    for file, photo in names.items():
        Image.fromarray(getattr(data, photo)()).convert("RGB").save(folder / file)
    return folder
