"""Data sets: one table of them (``datasets``: digits, Fashion-MNIST, cluttered Fashion-MNIST, CIFAR, ImageFolder)."""

from . import datasets as _datasets
from .datasets import *  # noqa: F403  (every public name of the table's module)

__all__ = list(_datasets.__all__)
