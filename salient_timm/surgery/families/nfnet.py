"""timm ``nfnet.py``: ``NormFreeBlock`` (nf_resnet*, nf_regnet*, nf_seresnet*, nfnet_*, dm_nfnet_*, eca_nfnet_*).

| block | post | mid |
|---|---|---|
| NormFreeBlock | ``attn_last`` (timm's, ResNet-style) after ``conv3``, before ``* alpha`` | ``attn`` (timm's, RegNet-style) after ``conv2`` (``conv2b``) |

Both slots are timm's own (``None`` when empty). There is no norm: convs are weight-standardised
(``ScaledStdConv2d``). The block multiplies a slot's output by ``attn_gain`` (2 by default, NF's correction for a
sigmoid gate's mean of 1/2), so an identity start divides its gate by it: ``attn_gain * gate == 1``.
"""

from timm.models.nfnet import NormFreeBlock

from ..adapter import BlockAdapter, Slot, conv_in, conv_out, register_adapter


def _attn_gain(block) -> float:
    return float(block.attn_gain)


register_adapter(
    BlockAdapter(
        NormFreeBlock,
        post=Slot("attn_last", conv_out("conv3"), native=True, gain=_attn_gain),
        mid=Slot("attn", conv_in("conv3"), native=True, gain=_attn_gain),
        note="norm-free: post on the last conv's output; slot output times attn_gain",
    )
)
