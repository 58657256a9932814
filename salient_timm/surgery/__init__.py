"""Model surgery: attention slots on the residual blocks of any ResNet, through one table of block adapters.

| module | job |
|---|---|
| ``adapter.py`` | ``Slot``, ``BlockAdapter``, the table (``ADAPTERS``) and its refusals (``UNSUPPORTED``) |
| ``families/`` | one module per timm/torchvision model file: its rows, and forward copies where timm has no slot |
| ``slots.py`` | the shared mechanism: class swap, slot filling, the fused residual epilogue, ``fuse()`` |
| ``inject.py`` | the planner: ``find_residual_blocks``, ``attention_modules``, ``inject_attention`` (stages too) |
| ``record.py`` | ``SurgeryStep`` (one ``inject_attention`` call as data) and ``record_retrofit`` (the hub record) |
| ``table.py`` | the "supported blocks" table of the README, generated from the rows |
"""

from .adapter import ADAPTERS, UNSUPPORTED, BlockAdapter, Slot, adapter_for, register_adapter, register_unsupported
from .inject import (
    INITS,
    POSITIONS,
    ResidualBlock,
    SurgeryError,
    attention_modules,
    find_residual_blocks,
    inject_attention,
    residual_stages,
    supported_blocks,
)
from .record import SurgeryStep, record_retrofit

__all__ = [
    "ADAPTERS",
    "UNSUPPORTED",
    "BlockAdapter",
    "Slot",
    "adapter_for",
    "register_adapter",
    "register_unsupported",
    "INITS",
    "POSITIONS",
    "ResidualBlock",
    "SurgeryError",
    "attention_modules",
    "find_residual_blocks",
    "inject_attention",
    "residual_stages",
    "supported_blocks",
    "SurgeryStep",
    "record_retrofit",
]
