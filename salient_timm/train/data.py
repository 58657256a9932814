"""Datasets for salient-train, built on torchvision's datasets/transforms and timm's transform factory.

| name | source | classes | channels |
|---|---|---|---|
| digits | scikit-learn's 1797 real 8x8 handwritten digits, fixed stratified split 1437/360, upsampled | 10 | 1 |
| fashion-mnist | the standard idx files (optionally .gz); default folder /usr/share/datasets/fashion-mnist (Debian's dataset-fashion-mnist) | 10 | 1 |
| cifar10 / cifar100 | torchvision's CIFAR folders under --data-dir (downloaded only with --download) | 10 / 100 | 3 |
| imagefolder | torchvision ImageFolder trees --data-dir/train and --data-dir/val (or test) | folders | 3 |
"""

import gzip
import os
import pickle
from dataclasses import dataclass
from typing import Any, Callable, Optional, Tuple

import numpy as np
import torch
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD, create_transform
from torch.utils.data import Dataset
from torchvision import datasets
from torchvision.transforms import v2

from ..errors import SalientError
from ..extras import require

__all__ = ["DataBundle", "DatasetError", "build_datasets", "FASHION_MNIST_DEFAULT_DIR", "read_idx"]

FASHION_MNIST_DEFAULT_DIR = "/usr/share/datasets/fashion-mnist"
CIFAR_MEAN, CIFAR_STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)
DIGITS_TEST_SIZE = 360


class DatasetError(SalientError, ValueError):
    """A dataset that cannot be found or read (the message names the folder and the fix)."""


@dataclass
class DataBundle:
    train: Any  # map-style datasets with __len__ (torch's Dataset type declares none)
    test: Any
    num_classes: int
    in_chans: int
    mean: Tuple[float, ...]
    std: Tuple[float, ...]


class TensorImages(Dataset):
    """Images held in memory as a uint8/float tensor (N, C, H, W) with labels, and a per-item transform."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, transform: Callable) -> None:
        self.images, self.labels, self.transform = images, labels, transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> Tuple[torch.Tensor, int]:
        return self.transform(self.images[i]), int(self.labels[i])


def _gray_transform(size: int, native: int, mean: float, std: float, augment: bool) -> Callable:
    steps = [v2.ToDtype(torch.float32, scale=True)]
    if size != native:
        steps.append(v2.Resize((size, size), antialias=True))
    if augment:
        steps.append(v2.RandomAffine(degrees=10, translate=(0.1, 0.1)))
    steps.append(v2.Normalize([mean], [std]))
    return v2.Compose(steps)


def _digits(img_size: int, augment: bool) -> DataBundle:
    load_digits = require("sklearn.datasets", "train", "the digits dataset").load_digits
    train_test_split = require("sklearn.model_selection", "train", "the digits dataset").train_test_split

    digits = load_digits()
    images = torch.from_numpy((digits.images * (255.0 / 16.0)).round().astype(np.uint8)).unsqueeze(1)
    labels = torch.from_numpy(digits.target)
    idx_train, idx_test = train_test_split(
        np.arange(len(labels)), test_size=DIGITS_TEST_SIZE, random_state=0, stratify=digits.target
    )
    train_x = images[idx_train].float() / 255
    mean, std = train_x.mean().item(), train_x.std().item()
    return DataBundle(
        TensorImages(images[idx_train], labels[idx_train], _gray_transform(img_size, 8, mean, std, augment)),
        TensorImages(images[idx_test], labels[idx_test], _gray_transform(img_size, 8, mean, std, False)),
        num_classes=10,
        in_chans=1,
        mean=(mean,),
        std=(std,),
    )


def read_idx(path: str) -> torch.Tensor:
    """Read an idx file (MNIST format; ``.gz`` or plain) into a uint8 tensor."""
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    if len(data) < 8 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise DatasetError(f"{path} is not an unsigned-byte idx file")
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    body = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(dims)):
        raise DatasetError(f"{path}: header says {dims}, file holds {body.size} values (truncated?)")
    return torch.from_numpy(body.reshape(dims).copy())


def _find(folder: str, stem: str) -> str:
    for name in (stem, stem + ".gz"):
        if os.path.isfile(os.path.join(folder, name)):
            return os.path.join(folder, name)
    raise DatasetError(
        f"fashion-mnist: {stem}[.gz] not found in {folder} "
        "(install Debian's dataset-fashion-mnist or pass --data-dir with the four idx files)"
    )


def _fashion_mnist(data_dir: Optional[str], img_size: int, augment: bool) -> DataBundle:
    folder = data_dir or FASHION_MNIST_DEFAULT_DIR
    parts = {}
    for split, prefix in (("train", "train"), ("test", "t10k")):
        images = read_idx(_find(folder, f"{prefix}-images-idx3-ubyte")).unsqueeze(1)
        labels = read_idx(_find(folder, f"{prefix}-labels-idx1-ubyte")).long()
        if len(images) != len(labels):
            raise DatasetError(f"fashion-mnist {split}: {len(images)} images but {len(labels)} labels")
        parts[split] = (images, labels)
    train_x = parts["train"][0].float() / 255
    mean, std = train_x.mean().item(), train_x.std().item()
    return DataBundle(
        TensorImages(*parts["train"], _gray_transform(img_size, 28, mean, std, augment)),
        TensorImages(*parts["test"], _gray_transform(img_size, 28, mean, std, False)),
        num_classes=10,
        in_chans=1,
        mean=(mean,),
        std=(std,),
    )


def _present(self) -> bool:
    """Integrity = every batch file present. torchvision's own check also compares MD5s with the
    official archive, which rejects re-packed or locally made CIFAR-format folders; a corrupt
    file still fails loudly when it is unpickled."""
    folder = os.path.join(self.root, self.base_folder)
    return all(os.path.isfile(os.path.join(folder, f)) for f, _ in self.train_list + self.test_list)


def _load_meta(self) -> None:
    """Class names from the meta file, without torchvision's MD5 comparison (see ``_present``)."""
    path = os.path.join(self.root, self.base_folder, self.meta["filename"])
    if not os.path.isfile(path):
        raise RuntimeError(f"CIFAR metadata file {path} not found")
    with open(path, "rb") as f:
        self.classes = pickle.load(f, encoding="latin1")[self.meta["key"]]
    self.class_to_idx = {name: i for i, name in enumerate(self.classes)}


class CIFAR10Folder(datasets.CIFAR10):
    _check_integrity = _present
    _load_meta = _load_meta


class CIFAR100Folder(datasets.CIFAR100):
    _check_integrity = _present
    _load_meta = _load_meta


def _cifar(name: str, data_dir: Optional[str], img_size: int, augment: bool, download: bool) -> DataBundle:
    if not data_dir:
        raise DatasetError(f"{name} needs --data-dir (the folder holding torchvision's CIFAR files)")
    cls = CIFAR10Folder if name == "cifar10" else CIFAR100Folder
    resize = [v2.Resize((img_size, img_size), antialias=True)] if img_size != 32 else []
    tail = [v2.ToImage(), v2.ToDtype(torch.float32, scale=True), v2.Normalize(CIFAR_MEAN, CIFAR_STD)]
    train_tf = v2.Compose(
        resize
        + ([v2.RandomCrop(img_size, padding=4 * img_size // 32), v2.RandomHorizontalFlip()] if augment else [])
        + tail
    )
    try:
        train = cls(data_dir, train=True, download=download, transform=train_tf)
        test = cls(data_dir, train=False, download=download, transform=v2.Compose(resize + tail))
    except (RuntimeError, OSError, EOFError, KeyError, ValueError, pickle.UnpicklingError) as e:
        raise DatasetError(f"{name} not found or unreadable under {data_dir} ({e}); pass --download to fetch it") from e
    return DataBundle(train, test, num_classes=len(train.classes), in_chans=3, mean=CIFAR_MEAN, std=CIFAR_STD)


def _imagefolder(data_dir: Optional[str], img_size: int, augment: bool) -> DataBundle:
    if not data_dir or not os.path.isdir(os.path.join(data_dir, "train")):
        raise DatasetError(f"imagefolder needs --data-dir with a train/ folder (got {data_dir!r})")
    test_dir = next(
        (os.path.join(data_dir, d) for d in ("val", "validation", "test") if os.path.isdir(os.path.join(data_dir, d))),
        None,
    )
    if test_dir is None:
        raise DatasetError(f"imagefolder: {data_dir} has train/ but no val/, validation/ or test/ folder")
    train = datasets.ImageFolder(os.path.join(data_dir, "train"), create_transform(img_size, is_training=augment))
    test = datasets.ImageFolder(test_dir, create_transform(img_size, is_training=False))
    if train.classes != test.classes:
        raise DatasetError(f"imagefolder: train/ and {os.path.basename(test_dir)}/ have different class folders")
    return DataBundle(
        train, test, num_classes=len(train.classes), in_chans=3, mean=IMAGENET_DEFAULT_MEAN, std=IMAGENET_DEFAULT_STD
    )


def build_datasets(
    name: str, data_dir: Optional[str], img_size: int, augment: bool, download: bool = False
) -> DataBundle:
    """Train/test datasets and their class and channel counts."""
    if name == "digits":
        return _digits(img_size, augment)
    if name == "fashion-mnist":
        return _fashion_mnist(data_dir, img_size, augment)
    if name in ("cifar10", "cifar100"):
        return _cifar(name, data_dir, img_size, augment, download)
    if name == "imagefolder":
        return _imagefolder(data_dir, img_size, augment)
    raise DatasetError(f"unknown dataset {name!r}; valid: digits, fashion-mnist, cifar10, cifar100, imagefolder")
