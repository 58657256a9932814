"""The data sets salient-train trains on and salient-analyze reads (no trainer code), built on torchvision's datasets/transforms and timm's transform factory.

| name | source | classes | channels |
|---|---|---|---|
| digits | scikit-learn's 1797 real 8x8 handwritten digits, fixed stratified split 1437/360, upsampled | 10 | 1 |
| fashion-mnist | the standard idx files (optionally .gz); default folder /usr/share/datasets/fashion-mnist (Debian's dataset-fashion-mnist); with ``canvas`` each item centred on a canvas x canvas black image | 10 | 1 |
| cluttered-fashion-mnist | the same items at random positions on a canvas (default 64) with ``clutter`` 8x8 patches of other items (``make_cluttered``); the test set yields object boxes | 10 | 1 |
| cifar10 / cifar100 | torchvision's CIFAR folders under --data-dir (downloaded only with --download) | 10 / 100 | 3 |
| imagefolder | torchvision ImageFolder trees --data-dir/train and --data-dir/val (or test) | folders | 3 |
"""

import copy
import dataclasses
import gzip
import os
import pickle
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np
import torch
from timm.data import DEFAULT_CROP_PCT, IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD, create_transform
from torch.utils.data import Dataset, Subset
from torchvision import datasets
from torchvision.transforms import v2

from ..errors import SalientError
from ..extras import require

__all__ = [
    "DataBundle",
    "DatasetError",
    "TensorImages",
    "build_datasets",
    "center_on_canvas",
    "make_cluttered",
    "DATASET_NAMES",
    "FASHION_MNIST_DEFAULT_DIR",
    "ItemOptions",
    "CLUTTER_SEEDS",
    "read_idx",
    "hold_out",
    "split_labels",
    "stratified_indices",
    "fashion_mnist_split",
    "FASHION_MNIST_CLASSES",
    "ITEM_SIZE",
    "CLUTTERED_CANVAS",
    "CLUTTERED_CLUTTER",
    "CLUTTER_PATCH",
]

FASHION_MNIST_DEFAULT_DIR = "/usr/share/datasets/fashion-mnist"
FASHION_MNIST_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)  # fmt: skip


def tensor_eval_config(size: int, mean: Tuple[float, ...], std: Tuple[float, ...], channels: int) -> Dict[str, Any]:
    """timm's data config of the in-memory data sets' evaluation transform: scale to 0..1, resize to ``size``
    (bilinear, antialiased), normalise; no crop."""
    return dict(
        input_size=(channels, size, size),
        interpolation="bilinear",
        crop_pct=1.0,
        crop_mode="center",
        mean=tuple(mean),
        std=tuple(std),
    )


CIFAR_MEAN, CIFAR_STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)
DIGITS_TEST_SIZE = 360
# cluttered canvases are one fixed data set, whatever a run's --seed: the same canvases for every arm and seed
CLUTTER_SEEDS = {"train": 0, "test": 1}


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
    val: Any = None  # items held out of the training split (--holdout), preprocessed as the test split
    # timm's data config of the evaluation transform, exactly (input_size, interpolation, crop_pct, crop_mode,
    # mean, std): what a checkpoint records and an exported folder hands timm's resolve_data_config
    eval_config: Dict[str, Any] = dataclasses.field(default_factory=dict)
    class_names: List[str] = dataclasses.field(default_factory=list)


class TensorImages(Dataset):
    """Images held in memory as a uint8/float tensor (N, C, H, W) with labels, and a per-item transform.

    ``boxes`` (N, 4) int64, optional: each image's object box ``x0, y0, x1, y1`` in input pixels (x1, y1
    exclusive). ``with_boxes()`` is the same data yielding ``(image, label, box)`` for localization metrics."""

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        transform: Callable,
        boxes: Optional[torch.Tensor] = None,
        yield_boxes: bool = False,
    ) -> None:
        self.images, self.labels, self.transform = images, labels, transform
        self.boxes, self.yield_boxes = boxes, yield_boxes

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> Any:
        item = (self.transform(self.images[i]), int(self.labels[i]))
        if self.yield_boxes:
            assert self.boxes is not None
            return (*item, self.boxes[i])
        return item

    def with_boxes(self) -> "TensorImages":
        """This data set yielding ``(image, label, box)``; ``DatasetError`` if it has no boxes."""
        if self.boxes is None:
            raise DatasetError("this data set has no object boxes (only cluttered-fashion-mnist has them)")
        return TensorImages(self.images, self.labels, self.transform, self.boxes, yield_boxes=True)


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
        eval_config=tensor_eval_config(img_size, (mean,), (std,), 1),
        class_names=[str(d) for d in range(10)],
    )


SUBSET_SEED = 0  # subsets and hold-outs are the same items for every run, whatever its --seed


def stratified_indices(labels: torch.Tensor, keep: int, seed: int = SUBSET_SEED) -> torch.Tensor:
    """``keep`` indices of ``labels`` drawn per class in proportion to its share (largest remainders), each class
    at least once, in a fixed random order (``seed``); returned sorted. ``DatasetError`` if ``keep`` is smaller
    than the number of classes or larger than the split."""
    labels = torch.as_tensor(labels).long()
    classes = labels.unique()
    if keep < len(classes):
        raise DatasetError(
            f"{keep} items cannot cover the split's {len(classes)} classes: keep at least {len(classes)}"
        )
    if keep > len(labels):
        raise DatasetError(f"{keep} items is more than the split's {len(labels)}")
    g = torch.Generator().manual_seed(seed)
    counts = torch.stack([(labels == c).sum() for c in classes]).double()
    quota = counts * keep / len(labels)
    take = quota.floor().long().clamp_min(1)
    order = torch.argsort(quota - quota.floor(), descending=True)
    left = keep - int(take.sum())
    for i in order.tolist():  # largest remainders first; classes with room only
        if left <= 0:
            break
        if take[i] < counts[i]:
            take[i] += 1
            left -= 1
    while left < 0:  # the at-least-one rule overshot: take back from the largest classes
        i = int(torch.argmax(take))
        take[i] -= 1
        left += 1
    chosen = [
        torch.nonzero(labels == c).flatten()[torch.randperm(int(counts[i]), generator=g)[: int(take[i])]]
        for i, c in enumerate(classes)
    ]
    return torch.cat(chosen).sort().values


def split_labels(data: Any) -> torch.Tensor:
    """The labels of a map-style data set: ours (``labels``), torchvision's (``targets``), or a ``Subset`` of one."""
    if isinstance(data, Subset):
        return split_labels(data.dataset)[torch.as_tensor(data.indices)]
    labels = getattr(data, "labels", None)
    if labels is None:
        labels = getattr(data, "targets", None)
    if labels is None:
        raise DatasetError(f"{type(data).__name__} has no labels to stratify by")
    return torch.as_tensor(labels)


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


def _check_items(images: torch.Tensor, canvas: int) -> None:
    if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[1] != 1:
        raise DatasetError(f"items must be uint8 (N, 1, H, W), got {images.dtype} {tuple(images.shape)}")
    if canvas < max(images.shape[2:]):
        raise DatasetError(f"canvas {canvas} is smaller than the {images.shape[2]}x{images.shape[3]} items")


def center_on_canvas(images: torch.Tensor, canvas: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """Items (N, 1, h, w) uint8 centred on black canvas x canvas images; returns the canvases and their boxes
    (N, 4) int64 as ``x0, y0, x1, y1`` (x1, y1 exclusive)."""
    _check_items(images, canvas)
    n, _, h, w = images.shape
    y0, x0 = (canvas - h) // 2, (canvas - w) // 2
    out = torch.zeros(n, 1, canvas, canvas, dtype=torch.uint8)
    out[:, :, y0 : y0 + h, x0 : x0 + w] = images
    return out, torch.tensor([x0, y0, x0 + w, y0 + h], dtype=torch.int64).repeat(n, 1)


ITEM_SIZE = 28  # Fashion-MNIST's items are 28x28
# cluttered-fashion-mnist's layout: Mnih et al.'s 60x60 canvas rounded up to 64 (halves evenly down a ResNet),
# their 8 patches of 8x8 pixels
CLUTTERED_CANVAS, CLUTTERED_CLUTTER, CLUTTER_PATCH = 64, 8, 8


def make_cluttered(
    images: torch.Tensor,
    labels: torch.Tensor,
    *,
    canvas: int = CLUTTERED_CANVAS,
    clutter: int = CLUTTERED_CLUTTER,
    patch: int = CLUTTER_PATCH,
    seed: int = 0,
) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Cluttered, translated items: the protocol of Mnih et al. 2014 ("Recurrent Models of Visual Attention",
    cluttered translated MNIST) for any (N, 1, h, w) uint8 items, e.g. Fashion-MNIST's 28x28.

    Each item sits at a uniformly random position fully inside a black ``canvas`` x ``canvas`` image; ``clutter``
    patches of ``patch`` x ``patch`` pixels, each cut at a random place from another item of the same set, sit at
    random positions (overlapping patches keep the brighter pixel); the item is drawn last, so inside its box every
    non-zero item pixel is the item's. Deterministic from ``seed``.

    Returns ``(canvases uint8 (N, 1, canvas, canvas), labels (N,), boxes int64 (N, 4))``, boxes as ``x0, y0, x1,
    y1`` in canvas pixels (x1, y1 exclusive). Raises ``DatasetError`` for items that are not uint8 (N, 1, h, w),
    a canvas smaller than an item, a patch larger than an item, a negative clutter or clutter without other items.
    """
    _check_items(images, canvas)
    n, _, h, w = images.shape
    if clutter < 0:
        raise DatasetError(f"clutter must be 0 or more patches, got {clutter}")
    if not 1 <= patch <= min(h, w):
        raise DatasetError(f"patch must be 1 to {min(h, w)} pixels (the item size), got {patch}")
    if clutter and n < 2:
        raise DatasetError("clutter is cut from other items: give at least 2 items")
    g = torch.Generator().manual_seed(seed)
    out = torch.zeros(n, 1, canvas, canvas, dtype=torch.uint8)
    rows = torch.arange(n)[:, None, None]
    span = torch.arange(patch)
    for _ in range(clutter):
        source = torch.randint(0, n - 1, (n,), generator=g)
        source += source >= torch.arange(n)  # another item, never the item itself
        sy = torch.randint(0, h - patch + 1, (n,), generator=g)[:, None] + span
        sx = torch.randint(0, w - patch + 1, (n,), generator=g)[:, None] + span
        cut = images[source[:, None, None], 0, sy[:, :, None], sx[:, None, :]]  # (n, patch, patch)
        cy = torch.randint(0, canvas - patch + 1, (n,), generator=g)[:, None] + span
        cx = torch.randint(0, canvas - patch + 1, (n,), generator=g)[:, None] + span
        where = (rows, 0, cy[:, :, None], cx[:, None, :])
        out[where] = torch.maximum(out[where], cut)
    y0 = torch.randint(0, canvas - h + 1, (n,), generator=g)
    x0 = torch.randint(0, canvas - w + 1, (n,), generator=g)
    where = (rows, 0, (y0[:, None] + torch.arange(h))[:, :, None], (x0[:, None] + torch.arange(w))[:, None, :])
    item = images[:, 0]
    out[where] = torch.where(item > 0, item, out[where])
    boxes = torch.stack([x0, y0, x0 + w, y0 + h], dim=1)
    return out, labels.clone(), boxes


@dataclass(frozen=True)
class ItemOptions:
    """How Fashion-MNIST items are laid out and how many are used (salient-train's --canvas, --clutter,
    --train-subset, --test-subset). ``None``: the data set's default (``for_dataset``)."""

    canvas: Optional[int] = None  # None: the native 28x28 items (cluttered: CLUTTERED_CANVAS)
    clutter: Optional[int] = None  # None: CLUTTERED_CLUTTER when cluttered, else none
    cluttered: bool = False
    train_subset: Optional[int] = None
    test_subset: Optional[int] = None
    holdout: Optional[float] = None  # share of the training items held out for validation

    def for_dataset(self, name: str) -> "ItemOptions":
        """These options with ``name``'s defaults filled in (the one place the cluttered layout's defaults apply)."""
        cluttered = name == "cluttered-fashion-mnist"
        if not cluttered:
            return dataclasses.replace(self, cluttered=False, clutter=0)
        return dataclasses.replace(
            self,
            cluttered=True,
            canvas=CLUTTERED_CANVAS if self.canvas is None else self.canvas,
            clutter=CLUTTERED_CLUTTER if self.clutter is None else self.clutter,
        )


def fashion_mnist_split(
    data_dir: Optional[str], split: str, img_size: int, items: ItemOptions
) -> Tuple[torch.Tensor, torch.Tensor, Optional[torch.Tensor]]:
    """One split (``"train"`` or ``"test"``) of Fashion-MNIST laid out as ``items`` say (``for_dataset`` applied):
    ``(images uint8 (N, 1, S, S), labels (N,), boxes (N, 4) in input pixels at img_size, or None)``.
    The cluttered canvases of a split are cut from that split's items only, with its fixed seed."""
    folder = data_dir or FASHION_MNIST_DEFAULT_DIR
    prefix, keep = {"train": ("train", items.train_subset), "test": ("t10k", items.test_subset)}[split]
    images = read_idx(_find(folder, f"{prefix}-images-idx3-ubyte")).unsqueeze(1)
    labels = read_idx(_find(folder, f"{prefix}-labels-idx1-ubyte")).long()
    if len(images) != len(labels):
        raise DatasetError(f"fashion-mnist {split}: {len(images)} images but {len(labels)} labels")
    if keep is not None:
        chosen = _subset_indices(labels, keep, split)
        images, labels = images[chosen], labels[chosen]
    boxes = None
    if items.cluttered:
        canvas = CLUTTERED_CANVAS if items.canvas is None else items.canvas
        clutter = CLUTTERED_CLUTTER if items.clutter is None else items.clutter
        images, labels, boxes = make_cluttered(
            images, labels, canvas=canvas, clutter=clutter, seed=CLUTTER_SEEDS[split]
        )
    elif items.canvas:
        images, boxes = center_on_canvas(images, items.canvas)
    if boxes is not None and img_size != images.shape[-1]:  # boxes in input pixels
        boxes = (boxes.double() * img_size / images.shape[-1]).round().long()
    return images, labels, boxes


def _fashion_mnist(data_dir: Optional[str], img_size: int, augment: bool, items: ItemOptions) -> DataBundle:
    train, test = (fashion_mnist_split(data_dir, split, img_size, items) for split in ("train", "test"))
    native = train[0].shape[-1]
    train_x = train[0].float() / 255
    mean, std = train_x.mean().item(), train_x.std().item()
    return DataBundle(
        TensorImages(train[0], train[1], _gray_transform(img_size, native, mean, std, augment), train[2]),
        TensorImages(test[0], test[1], _gray_transform(img_size, native, mean, std, False), test[2]),
        num_classes=10,
        in_chans=1,
        mean=(mean,),
        std=(std,),
        eval_config=tensor_eval_config(img_size, (mean,), (std,), 1),
        class_names=list(FASHION_MNIST_CLASSES),
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
    return _rgb_bundle(train, test, CIFAR_MEAN, CIFAR_STD, tensor_eval_config(img_size, CIFAR_MEAN, CIFAR_STD, 3))


def _rgb_bundle(train: Any, test: Any, mean: Any, std: Any, eval_config: Dict[str, Any]) -> DataBundle:
    """A bundle of two torchvision datasets of RGB images whose ``classes`` name the labels."""
    return DataBundle(
        train,
        test,
        num_classes=len(train.classes),
        in_chans=3,
        mean=mean,
        std=std,
        eval_config=eval_config,
        class_names=list(train.classes),
    )


def _imagefolder(data_dir: Optional[str], img_size: int, augment: bool, crop_pct: Optional[float]) -> DataBundle:
    if not data_dir or not os.path.isdir(os.path.join(data_dir, "train")):
        raise DatasetError(f"imagefolder needs --data-dir with a train/ folder (got {data_dir!r})")
    test_dir = next(
        (os.path.join(data_dir, d) for d in ("val", "validation", "test") if os.path.isdir(os.path.join(data_dir, d))),
        None,
    )
    if test_dir is None:
        raise DatasetError(f"imagefolder: {data_dir} has train/ but no val/, validation/ or test/ folder")
    config: Dict[str, Any] = dict(  # timm's defaults; the evaluation transform is built from exactly this, and recorded
        input_size=(3, img_size, img_size),
        interpolation="bilinear",
        crop_pct=DEFAULT_CROP_PCT if crop_pct is None else crop_pct,
        crop_mode="center",
        mean=IMAGENET_DEFAULT_MEAN,
        std=IMAGENET_DEFAULT_STD,
    )
    train = datasets.ImageFolder(os.path.join(data_dir, "train"), create_transform(**config, is_training=augment))
    test = datasets.ImageFolder(test_dir, create_transform(**config, is_training=False))
    if train.classes != test.classes:
        raise DatasetError(f"imagefolder: train/ and {os.path.basename(test_dir)}/ have different class folders")
    return _rgb_bundle(train, test, IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD, config)


DATASET_NAMES = ("digits", "fashion-mnist", "cluttered-fashion-mnist", "cifar10", "cifar100", "imagefolder")


def _subset_indices(labels: torch.Tensor, keep: int, split: str) -> torch.Tensor:
    try:
        return stratified_indices(labels, keep)
    except DatasetError as e:
        raise DatasetError(f"--{split}-subset {keep}: {e}") from e


def _subset(data: Any, keep: Optional[int], split: str) -> Any:
    if keep is None:
        return data
    return Subset(data, _subset_indices(split_labels(data), keep, split).tolist())


def hold_out(data: DataBundle, fraction: float) -> DataBundle:
    """``fraction`` of the training items, stratified (``stratified_indices``, fixed seed), moved to ``data.val``
    and preprocessed as the test split is (no augmentation); the rest stays ``data.train``."""
    labels = split_labels(data.train)
    n_val = max(1, round(fraction * len(labels)))
    val_idx = stratified_indices(labels, n_val)
    keep = torch.ones(len(labels), dtype=torch.bool)
    keep[val_idx] = False
    train_idx = torch.nonzero(keep).flatten()
    if len(train_idx) < 1:
        raise DatasetError(f"--holdout {fraction} leaves no training items")
    data.val = Subset(_with_test_transform(data.train, data.test), val_idx.tolist())
    data.train = Subset(data.train, train_idx.tolist())
    return data


def _with_test_transform(train: Any, test: Any) -> Any:
    """A shallow copy of the training set (or of the set a ``Subset`` views) with the test split's transform."""
    if isinstance(train, Subset):
        return Subset(_with_test_transform(train.dataset, test), train.indices)
    copy_ = copy.copy(train)
    base: Any = test.dataset if isinstance(test, Subset) else test
    copy_.transform = base.transform
    return copy_


def build_datasets(
    name: str,
    data_dir: Optional[str],
    img_size: int,
    augment: bool,
    download: bool = False,
    items: Optional[ItemOptions] = None,
    crop_pct: Optional[float] = None,
) -> DataBundle:
    """Train/test datasets and their class and channel counts. ``items``: canvas, clutter, subsets and the hold-out
    (canvas and clutter apply to the Fashion-MNIST data sets; a subset keeps N items of a split, stratified by
    class with a fixed seed, for any data set; ``holdout``: a stratified share of the training items becomes the
    validation set ``val``). ``crop_pct``: imagefolder's evaluation centre crop (timm's default 0.875). The bundle's
    ``eval_config`` is timm's data config of the evaluation transform, ``class_names`` the label of each index."""
    items = items or ItemOptions()
    data = _build(name, data_dir, img_size, augment, download, items, crop_pct)
    return hold_out(data, items.holdout) if items.holdout else data


def _build(
    name: str,
    data_dir: Optional[str],
    img_size: int,
    augment: bool,
    download: bool,
    items: ItemOptions,
    crop_pct: Optional[float],
) -> DataBundle:
    if name in ("fashion-mnist", "cluttered-fashion-mnist"):
        return _fashion_mnist(data_dir, img_size, augment, items.for_dataset(name))
    if name == "digits":
        data = _digits(img_size, augment)
    elif name in ("cifar10", "cifar100"):
        data = _cifar(name, data_dir, img_size, augment, download)
    elif name == "imagefolder":
        data = _imagefolder(data_dir, img_size, augment, crop_pct)
    else:
        raise DatasetError(f"unknown dataset {name!r}; valid: {', '.join(DATASET_NAMES)}")
    data.train = _subset(data.train, items.train_subset, "train")
    data.test = _subset(data.test, items.test_subset, "test")
    return data
