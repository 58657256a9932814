"""The README's "Supported blocks" table, generated from the adapter rows (a test keeps the README equal to it)."""

from typing import List, Optional

from .adapter import ADAPTERS, UNSUPPORTED, BlockAdapter, Slot

__all__ = ["supported_blocks_table"]


def _slot(slot: Optional[Slot]) -> str:
    if slot is None:
        return "-"
    return f"`{slot.attr}`" + (" (timm's)" if slot.native else "")


def _family(cls: type) -> str:
    module = cls.__module__
    return (
        f"torchvision `{module.split('.')[-1]}`"
        if module.startswith("torchvision")
        else f"timm `{module.split('.')[-1]}`"
    )


def supported_blocks_table() -> str:
    """A markdown table: one row per block class (family, class, post slot, mid slot, note), refused classes last."""
    rows: List[BlockAdapter] = sorted(
        {id(a): a for a in ADAPTERS.values()}.values(), key=lambda a: (_family(a.block), a.block.__name__)
    )
    lines = ["| family | block | post slot | mid slot | note |", "|---|---|---|---|---|"]
    lines += [
        f"| {_family(a.block)} | `{a.block.__name__}` | {_slot(a.post)} | {_slot(a.mid)} | {a.note} |" for a in rows
    ]
    refused = sorted(UNSUPPORTED.items(), key=lambda kv: (_family(kv[0]), kv[0].__name__))
    lines += [f"| {_family(cls)} | `{cls.__name__}` | refused | refused | {why} |" for cls, why in refused]
    return "\n".join(lines)
