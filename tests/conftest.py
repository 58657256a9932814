"""pytest fixtures shared by every test (plain helpers live in helpers.py)."""

import pytest
import torch

import salient_timm  # noqa: F401  (registers the variants)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
